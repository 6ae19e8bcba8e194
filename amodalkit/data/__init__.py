"""Generated video worlds, object tracks, optical flow and the DAVIS format."""
from .scene import Clip, in_view, never_background_comoving, never_visible, render_clip
from .worlds import WORLDS, World, load_world, world_params

__all__ = ["Clip", "World", "WORLDS", "in_view", "load_world", "never_background_comoving", "never_visible",
           "render_clip", "world_params"]

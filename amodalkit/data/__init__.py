"""Generated video worlds and data helpers."""
from .worlds import Clip, World, in_view, load_world, never_background_comoving, never_visible

__all__ = ["Clip", "World", "in_view", "load_world", "never_visible", "never_background_comoving"]

"""STEm-Seg (Athar et al., ECCV 2020): spatio-temporal embeddings for instance segmentation in videos.

* :mod:`.model`: the network (per-frame encoder, 3D-conv decoder), the six mixing functions, the instance
  probability and the training loss (Lovasz hinge, variance smoothness, seediness: :mod:`amodalkit.losses`);
* :mod:`.inference`: seediness-ordered clustering and the chaining of clips over a video;
* :mod:`.data`: the DAVIS-like and KITTI-MOTS-like worlds, training windows, image-to-sequence synthesis;
* :mod:`.experiments`: the training recipe, cached training and evaluation;
* :mod:`.trackers`: the OF-Tracker and RI-Tracker baselines of supplement III.
"""
from .data import WORLDS, StemData, id_map, image_sequence, instance_masks, load_stem_data  # noqa: F401
from .experiments import StemRecipe, predict_tracks, score_tracks, train_stemseg, validation_loss  # noqa: F401
from .inference import chain_clips, clip_windows, cluster_clip, segment_video  # noqa: F401
from .model import MIXING, STEmSeg, clip_loss, coordinate_grid, instance_probability  # noqa: F401

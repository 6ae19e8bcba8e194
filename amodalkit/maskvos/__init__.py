"""Mask-VOS (Li et al., CVPR 2023): unified mask embedding and correspondence learning for self-supervised VOS.

* :mod:`.model`: the network (the CRW backbone with its key head, mask encoder, decoder), L_Corr and L_Seg;
* :mod:`.clustering`: pseudo masks by k-means or Sinkhorn clustering of the keys;
* :mod:`.inference`: Algorithm S1 with recurrent refinement;
* :mod:`.experiments`: the recipe, both training phases for L_Corr and CRW, the gate and the Table S2 timing.
"""
from .clustering import cluster_video, foreground_iou, objects_from_clusters, sinkhorn  # noqa: F401
from .experiments import (LEARNERS, MaskRecipe, correspondence_margin, pseudo_iou, pseudo_masks,  # noqa: F401
                          seg_plateau, segmentation_validation, time_steps, train_phase_a, train_phase_b)
from .inference import decoder_effect, refine, segment_clip  # noqa: F401
from .model import MaskVOS, aggregate, correspondence_loss, segmentation_loss  # noqa: F401

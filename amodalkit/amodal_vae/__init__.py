"""Amodal-VAE (Ling et al., NeurIPS 2020): variational amodal mask completion, written from the supplement.

No public code exists; the supplement (sections 1-3) and ``shared/reference-facts.md`` are the
specification:

* masks are tightly cropped to their box and resized to 28x28; the latent has 64 dimensions;
* encoder and decoder are CNNs followed by two residual blocks and fully connected layers, batch
  norm before every ReLU;
* a spatial transformer (a CNN with max pooling) maps between the partial mask's box and the full
  mask's box: here it predicts the amodal box relative to the visible box (:func:`relative_box`);
* three stages: (1) a VAE on full masks with the KL weight :func:`kl_weight`; (2) a partial-mask
  encoder trained on synthetic occlusions with the decoder frozen; (3) fine-tuning on really
  occluded instances with the reconstruction loss restricted to pixels no occluder covers;
* Adam 1e-3 in stage 1, 1e-4 after; the binarisation threshold is tuned on validation.

Where the supplement is silent or our budget differs: stage 1 learns the whole masks of many clips
(:func:`full_mask_set`, about 20 times the chapters' own) and is cached once per seed and schedule; the KL
schedule is scaled to the run (:func:`scaled_kl_schedule`); stage 2 starts the partial encoder from the trained
full encoder. Active latent dimensions are measured as Burda et al. define them (:func:`active_units`).

Modules (everything public is re-exported here):

* :mod:`.model`: the schedule, the networks, boxes, the stages' losses, the latent-space measures;
* :mod:`.data`: instances of a world and the whole-mask set of stage 1;
* :mod:`.training`: the recipe and the three stages (cached models keyed by ``TRAINING_CODE``);
* :mod:`.analysis`: completion, IoUs, thresholds, prior samples;
* :mod:`.experiments`: the chapters' data and models (named once for the notebooks and the parallel warm-up).

Box convention: (x0, y0, x1, y1) in pixels of a continuous frame whose pixel i covers [i, i + 1).
"""
from __future__ import annotations

from .model import (  # noqa: F401
    MASK_SIZE, LATENT_DIM, kl_weight, scaled_kl_schedule, kl_divergence, ResidualBlock, MaskEncoder, MaskDecoder,
    BoxTransformer, AmodalVAE, tight_box, relative_box, absolute_box, reconstruction, stage1_loss, stage2_loss,
    stage3_loss, shape_crops, posterior, latent_activity, active_units, kl_per_dimension,
)
from .data import Instances, _usable, full_mask_set, load_instances, instances_digest  # noqa: F401
from .training import (  # noqa: F401
    TRAINING_CODE, VAERecipe, STAGE1_FIELDS, train_stage1, train_amodal_vae,
)
from .analysis import (  # noqa: F401
    complete, binarise, completion_iou, tune_threshold, prior_samples, best_iou_to, classifier_two_sample_accuracy,
    pairwise_iou, active_dimensions,
    self_supervised_threshold,
)
from .experiments import (  # noqa: F401
    SETUP_PARAMS, PCNET_PARAMS, PCNET_CODE, ROBUSTNESS_WORLD, ChapterData, recipe_from, schedules, chapter_data,
    train_vae, pcnet_training_masks, check_pcnet_params, train_pcnet, warm_tasks,
)

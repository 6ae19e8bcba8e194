"""SaVos (Yao et al., NeurIPS 2022): the method, its theory and the experiments of its chapters.

Modules (everything public is re-exported here, so ``savos.predict`` etc. work as before):

* :mod:`.losses`: W, L_M, L_C (the paper's plain sum or the release's running total), L_complete, the training loss;
* :mod:`.theory`: Theorem 1's free-mask optimisation and the cost of the chained losses (App. B);
* :mod:`.model`: the network of Table 6, crops and warps, the bidirectional prediction with alpha fusion;
* :mod:`.baseline`: Algorithm 1, the rule-based completion;
* :mod:`.world_tracks`: the worlds' tracks for the chapters (cut once, cached, keyed);
* :mod:`.training`: the recipe and the training of every ablation row (the cached models are keyed by this module,
  the model, the losses, ``deocclusion.py`` and ``ops.py``, not by the evaluation);
* :mod:`.experiments`: predictions in image space, scores, reliance probes and each chapter's setup.

Self-Deocclusion's loss and erasers live in :mod:`amodalkit.deocclusion`; :func:`.losses.deocclusion_window_loss`
applies them to SaVos's windows of crops (Table 2's rows).
"""
from __future__ import annotations

from .losses import (  # noqa: F401
    visibility_weight, warp_sequence, mask_loss, consistency_loss, complete_loss, _pass_consistency,
    fused_consistency, photometric_loss, savos_loss, deocclusion_window_loss, supervised_window_loss,
)
from .theory import (  # noqa: F401
    FreeMaskFit, fit_free_masks, theorem_inputs, free_fit_prediction, free_fit_scores, chain_cost_problem,
    chained_loss,
)
from .model import (  # noqa: F401
    PAPER_SIZE, check_crop_size, layer_specs, tower_channels, ConvTower, DeconvTower, Variant, VARIANTS, Direction,
    base_flow, SaVosNet, crop_warp, TrackBatch, track_batch, cycled_batch, _flip, Prediction, predict,
)
from .baseline import (  # noqa: F401
    splat, aggregate, rule_based_completion,
)
from .world_tracks import (  # noqa: F401
    WorldTracks, RELEASE_TRAIN_FILTER, train_filter_args, visible_masks, load_world_tracks,
)
from .training import (  # noqa: F401
    TRAINING_CODE, SaVosRecipe, matched_pcnet_width, make_model, variant_loss, train_variant,
)
from .experiments import (  # noqa: F401
    crop_predictions, Scores, score_tracks, image_predictions, RELIANCE_PROBES, switched_inputs, donor_tracks,
    reliance_probes, without_past, rule_predictions, chapter_setup, variant_scores, binary_amodal, ablation_rows,
    ABLATION_WORLDS,
)
from ..deocclusion import erasers, weighted_deocclusion_loss  # noqa: F401,E402

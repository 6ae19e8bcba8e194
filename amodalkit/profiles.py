"""Every notebook's parameters, their types and ranges, and the three profiles: one file.

* ``NOTEBOOKS[name]`` declares each parameter of a notebook with its ``quick`` value (the value the
  notebook's parameters cell holds, so a reader running it by hand gets the default profile).
* ``PROFILES[profile][name]`` overrides some of them: ``smoke`` (seconds, proves the notebook
  runs), ``quick`` (the default: real results on a 2-core CPU), ``gpu`` (the gated chapters at the step budgets
  their gates need, on one GPU; see the plan above its entry), ``paper`` (the papers' sizes, for a CUDA machine).

Parameters are validated before any work starts: an unknown name, a wrong type or an
out-of-range value raises :class:`ParameterError` naming the notebook, the parameter and what
was expected.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A notebook parameter that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    kind: int, float, bool, str or list (of ``item``); default: the quick value;
    low/high: inclusive bounds for numbers (and for list items); choices: allowed values.
    """

    kind: type
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    item: type | None = None
    min_len: int = 1

    def expected(self) -> str:
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(self.kind)
        if self.kind is list:
            what = f"a list of at least {self.min_len} {self.item.__name__}s"
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        if self.low is not None or self.high is not None:
            lo = "-inf" if self.low is None else self.low
            hi = "inf" if self.high is None else self.high
            what += f" in [{lo}, {hi}]" if self.kind is not list else f", each in [{lo}, {hi}]"
        return what

    def _scalar(self, kind: type, value: Any) -> Any:
        if kind is bool:
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError
            return value
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        raise TypeError

    def _in_range(self, value: Any) -> bool:
        if self.low is not None and value < self.low:
            return False
        if self.high is not None and value > self.high:
            return False
        return True

    def check(self, notebook: str, name: str, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise :class:`ParameterError`."""
        problem = f"{notebook}: parameter {name!r} must be {self.expected()}, got {value!r} ({type(value).__name__})"
        try:
            if self.kind is list:
                if not isinstance(value, (list, tuple)) or len(value) < self.min_len:
                    raise TypeError
                out = [self._scalar(self.item, v) for v in value]
                if not all(self._in_range(v) for v in out):
                    raise TypeError
            else:
                out = self._scalar(self.kind, value)
                if self.kind in (int, float) and not self._in_range(out):
                    raise TypeError
            if self.choices is not None and out not in self.choices:
                raise TypeError
        except TypeError:
            raise ParameterError(problem) from None
        return out


# shared by the three CRW chapters (crw_shortcut, crw_propagation, crw_ablations): data, recipe, evaluation
_CRW_COMMON: dict[str, Param] = {
    "seeds": Param(int, 3, "world and initialisation seeds", 1, 50),
    "preset": Param(str, "quick", "vos world sizes: quick defaults or the paper's 480p", choices=("quick", "paper")),
    "height": Param(int, 96, "vos frame height, pixels", 32, 1080),
    # 4:3 as Kinetics' common 340 x 256: the release's RandomResizedCrop (area 0.8-0.95, ratio 0.7-1.3) mostly fits
    "width": Param(int, 128, "vos frame width, pixels", 32, 1920),
    "n_frames": Param(int, 24, "frames per vos clip (a clip of 4 frames at stride s spans 3 s + 1)", 8, 200),
    "train_clips": Param(int, 32, "vos training videos per seed", 1, 100_000),
    "val_clips": Param(int, 4, "vos validation videos (the walk-loss curve)", 1, 10_000),
    "test_clips": Param(int, 5, "vos test videos (J&F; 5 keeps the CRW chapters within their 15 minutes)", 1, 10_000),
    "crop": Param(int, 96, "training crop side (paper 256)", 16, 512),
    "patch": Param(int, 32, "patch side (paper 64); the grid's stride is half of it when crop = patch * (grid + 1) / 2", 8, 256),
    "grid": Param(int, 5, "patches per side (paper 7)", 2, 16),
    "batch": Param(int, 8, "clips per batch (paper 20)", 1, 256),
    # width 8: at 16 a step costs 1.2 s here and the 15-minute share allowed about 20 steps (benchmarks/crw_gate_budget.py
    # trains width 16 much longer, once: results/crw_gate_budget.json)
    "net_width": Param(int, 8, "ResNet-18 base width (paper 64)", 2, 64),
    "dim": Param(int, 128, "node embedding dimension (paper 128)", 4, 512),
    # 7 models a seed (4 strides, the noise control, the single-map pair) x 3 seeds in 15 minutes: far too few steps for
    # the correspondence gate (benchmarks/crw_gate_budget.py measures what a longer run reaches)
    "steps": Param(int, 40, "training steps", 1, 1_000_000),
    "lr": Param(float, 1e-4, "Adam learning rate (paper 1e-4)", 1e-6, 1.0),
    "stride": Param(int, 4, "frames between clip frames for the main model (paper: 8 fps of 30)", 1, 30),
    "test_scale": Param(float, 2.0, "frames are resized by this before encoding at test (paper: 256 -> 480p)", 0.25, 4.0),
    "radius": Param(float, 6.0, "propagation radius on the feature grid (paper 12 at 480p)", 0.5, 1000.0),
    "topk": Param(int, 10, "propagation top-k (paper 10)", 1, 1000),
    "context": Param(int, 20, "propagation context frames m (paper 20)", 1, 200),
    "temperature": Param(float, 0.05, "propagation softmax temperature (the release's evaluation command: 0.05)", 1e-4, 10.0),
}

# shared by the Amodal-VAE chapters: instances, the three stages' sizes and schedule
_VAE_COMMON: dict[str, Param] = {
    # 3 seeds within the Amodal-VAE chapters' 40-minute share: six stage-1 runs on fishbowl, three on street and
    # three PCNet-M, trained two at a time by the parallel warm-up (book run --jobs 2)
    "seeds": Param(int, 3, "world and initialisation seeds", 1, 50),
    "preset": Param(str, "quick", "world sizes: quick defaults or the papers' sizes", choices=("quick", "paper")),
    "train_clips": Param(int, 24, "training clips per seed (instances every `every` frames)", 1, 100_000),
    "stage1_clips": Param(int, 500, "training clips whose fully visible masks stage 1 learns (the first `train_clips` "
                          "of them are the chapters' own; 500 give about 20x the masks of 24)", 1, 100_000),
    "val_clips": Param(int, 6, "validation clips (selection, threshold)", 1, 10_000),
    "test_clips": Param(int, 8, "test clips", 1, 10_000),
    "every": Param(int, 2, "take instances from every n-th frame", 1, 100),
    "net_width": Param(int, 8, "convolution width (32 in the paper profile)", 2, 256),
    "hidden": Param(int, 128, "fully connected width", 8, 4096),
    "batch": Param(int, 32, "batch size (paper profile 64)", 2, 4096),
    # stage 1 (issue 33): 11,000 steps at Adam 4e-3, the 3-seed screen's choice (benchmarks/vae_rate_screen.py, 2000-step
    # runs at a constant KL weight: mean best validation loss 1e-3 152.0, 2e-3 147.2, 4e-3 145.1, 8e-3 146.0); at 10,000
    # steps and 8e-3 the gate read 0.5-1.4% (the curve still falls nearly log-linearly: benchmarks/vae_stage1_budget.py)
    "steps1": Param(int, 11_000, "stage 1 steps (VAE on full masks)", 1, 1_000_000),
    "lr1": Param(float, 4e-3, "stage 1 Adam learning rate (paper 1e-3; chosen on short runs' validation loss)",
                 1e-7, 1.0),
    "steps2": Param(int, 150, "stage 2 steps (partial encoder, synthetic occlusions)", 1, 1_000_000),
    "steps3": Param(int, 100, "stage 3 steps (fine-tuning on occluded instances)", 1, 1_000_000),
    "kl_begin": Param(int, 1100, "KL annealing start step t_begin: 10% of steps1 (paper 2000 of 20,000)", 0, 1_000_000),
    "kl_alpha": Param(float, 1 - 1 / 1100, "KL annealing rate alpha = 1 - 1/kl_begin (paper 0.9995)", 0.5, 0.999999),
}

# shared by the SaVos chapters (ablations, rule baseline, subsets, embeddings, Chewing Gum): the same
# values give the same cached models, so only the ablation chapter trains the fishbowl / street rows
_SAVOS_COMMON: dict[str, Param] = {
    "seeds": Param(int, 3, "world and initialisation seeds", 1, 50),
    "preset": Param(str, "quick", "world sizes: quick defaults or the papers' sizes", choices=("quick", "paper")),
    "train_clips": Param(int, 24, "training clips per seed", 1, 100_000),
    "val_clips": Param(int, 4, "validation clips (self-supervised selection)", 1, 10_000),
    "test_clips": Param(int, 16, "test clips", 1, 10_000),
    "crop": Param(int, 16, "crop height; the width is twice it (paper 64 x 128)", 16, 256),
    "base": Param(int, 8, "channels of the first CNN layer, a power of two (paper 32)", 1, 256),
    "window": Param(int, 8, "frames per training window", 3, 256),
    "batch": Param(int, 8, "windows per batch (paper 64 / 24 / 8)", 1, 1024),
    "steps": Param(int, 200, "training steps of every row", 1, 10_000_000),
    "lr": Param(float, 1e-3, "Adam learning rate (paper 1e-4)", 1e-7, 1.0),
    "pcnet_width": Param(int, 8, "PCNet-M U-Net width (Self-Deocclusion rows)", 1, 256),
}

NOTEBOOKS: dict[str, dict[str, Param]] = {
    "savos_ablations": {
        **_SAVOS_COMMON,
        "exact_flow_rows": Param(list, ["full", "no_flow", "no_image"],
                                 "rows trained again on both worlds with the exact flow as input (Table 3's judged "
                                 "rows; must include full, whose model is Table 4's)", item=str),
    },
    "savos_rule_baseline": dict(_SAVOS_COMMON),
    "savos_subsets": dict(_SAVOS_COMMON),
    "savos_embeddings": dict(_SAVOS_COMMON),
    # 5 seeds (the other SaVos chapters share 3 with the ablation chapter's cached models: 5 would exceed the budget)
    "savos_chewing_gum": {**_SAVOS_COMMON, "seeds": Param(int, 5, "world and initialisation seeds", 1, 50)},
    "vae_robustness": {
        **_VAE_COMMON,
        # street's stage 1 (its own models): 8000 steps, the schedule scaled to them (the 40-minute share)
        "steps1": Param(int, 8000, "stage 1 steps (VAE on full masks)", 1, 1_000_000),
        "kl_begin": Param(int, 800, "KL annealing start step t_begin: 10% of steps1 (paper 2000 of 20,000)", 0,
                          1_000_000),
        "kl_alpha": Param(float, 0.99875, "KL annealing rate alpha = 1 - 1/kl_begin (paper 0.9995)", 0.5, 0.999999),
        "deo_width": Param(int, 8, "PCNet-M U-Net width", 2, 256),
        "deo_size": Param(int, 32, "PCNet-M crop side (divisible by 4)", 8, 512),
        "deo_steps": Param(int, 2000, "PCNet-M training steps (the release: 32,000 at batch 256)", 1, 1_000_000),
        "deo_lr": Param(float, 3e-3, "PCNet-M Adam learning rate (chosen on a short run's validation loss)", 1e-7,
                        1.0),
    },
    "vae_inpainting": {
        **{k: v for k, v in _VAE_COMMON.items() if k != "seeds"},
        "seed": Param(int, 0, "world and model seed (the analysis chapter's seed-0 model)", 0, 2**31 - 1),
        "examples": Param(int, 4, "scenes shown", 1, 50),
    },
    "vae_analysis": {
        **_VAE_COMMON,
        "world": Param(str, "fishbowl", "the world whose instance masks are learnt", choices=("fishbowl", "street")),
        "samples": Param(int, 20, "posterior samples per instance (Fig. 1: best of 20)", 1, 1000),
        "n_prior": Param(int, 64, "prior samples decoded for Fig. 3 (its two-sample test holds out a fifth)", 5, 10_000),
    },
    "crw_shortcut": {
        **_CRW_COMMON,
        "map_steps": Param(int, 40, "training steps of the single-map runs (as many as `steps`)", 1, 1_000_000),
    },
    "crw_propagation": {
        **_CRW_COMMON,
        "contexts": Param(list, [1, 5, 20], "context sizes m of the F.1 sweep", 1, 200, item=int, min_len=2),
        "topks": Param(list, [1, 10], "top-k values of the F sweep", 1, 1000, item=int, min_len=2),
        "radii": Param(list, [6.0, 1000.0], "radii of the F sweep (1000: global)", 0.5, 1000.0,
                       item=float, min_len=2),
    },
    "crw_ablations": {
        **_CRW_COMMON,
        "strides": Param(list, [1, 4, 7, 0], "frame strides of the App. D ablation (0: one frame repeated)", 0, 30,
                         item=int, min_len=2),
        "ttt_steps": Param(int, 5, "test-time training updates per test video (paper: 100 every 5 frames)", 1, 10_000),
        "ttt_lr": Param(float, 1e-4, "test-time training learning rate (paper 1e-4)", 1e-7, 1.0),
    },
    "crw_theory": {
        "seeds": Param(int, 3, "random seeds (each draws `trials` problems)", 1, 50),
        "trials": Param(int, 2000, "random (q, u, V) draws per seed", 1, 1_000_000),
        "dim": Param(int, 128, "feature dimension (must exceed 1 + max_negatives for the least squares)", 2, 4096),
        "max_identical": Param(int, 20, "most negatives identical to the positive", 0, 10_000),
        "max_negatives": Param(int, 40, "most true negatives", 0, 4000),
    },
    "stem_losses": {
        "seeds": Param(int, 3, "random seeds (identity draws and the imbalance experiment's data and initialisation)", 1, 50),
        "identity_trials": Param(int, 500, "random (masks, +-1 logits) draws per seed for the Lovasz identities", 1, 1_000_000),
        "train_images": Param(int, 96, "vos frames (one per clip) to train the foreground segmenter on", 2, 100_000),
        "test_images": Param(int, 48, "vos frames to measure foreground IoU on", 1, 100_000),
        "object_size": Param(list, [0.08, 0.14], "vos object size range (fraction of the short side): small objects, "
                             "heavy class imbalance", 0.01, 0.5, item=float, min_len=2),
        "net_width": Param(int, 12, "channels of the small fully convolutional segmenter", 2, 256),
        "steps": Param(int, 300, "training steps per loss (equal budget)", 1, 1_000_000),
        "batch": Param(int, 8, "images per step", 1, 256),
        "lr": Param(float, 3e-3, "Adam learning rate (the same for both losses)", 1e-6, 1.0),
    },
    "stem_mixing": {
        "seeds": Param(int, 3, "world and initialisation seeds", 1, 50),
        "preset": Param(str, "quick", "world sizes: quick defaults or the papers' sizes", choices=("quick", "paper")),
        "mixings": Param(list, ["xy", "xyt", "xyf", "xytf", "xyff", "xyfff"], "mixing functions of Table I", item=str),
        "train_clips": Param(int, 16, "training videos per world and seed", 1, 100_000),
        "image_count": Param(int, 64, "stills for the image-sequence arm (middle frames of further clips)", 0, 100_000),
        "val_clips": Param(int, 8, "validation videos (the validation loss and the convergence gate)", 1, 10_000),
        "test_clips": Param(int, 6, "test videos per world and seed", 1, 10_000),
        "fast_height": Param(int, 48, "frame height of the fast-motion (KITTI-MOTS-like) street clips", 16, 1080),
        "fast_width": Param(int, 144, "frame width of the fast-motion street clips", 16, 1920),
        "width": Param(int, 8, "network width (release: ResNet-101 + FPN)", 2, 256),
        "stride": Param(int, 4, "output stride (release 4)", 2, 4),
        "clip_len": Param(int, 8, "frames per training and inference clip (release 8)", 2, 64),
        "overlap": Param(int, 4, "frames shared by consecutive inference clips (release 4 for KITTI-MOTS and YT-VIS)", 0, 63),
        "batch": Param(int, 2, "clips per step (release 2)", 1, 64),
        # 300 steps: 36 Table I models x 3 seeds' worth of both worlds fit the 15-minute share (about 10 s / 17 s each)
        "steps": Param(int, 300, "training steps per model (release 10k-160k)", 1, 1_000_000),
        "lr": Param(float, 3e-3, "Adam learning rate (release: SGD 1e-3)", 1e-6, 1.0),
        "decay_start": Param(float, 1.0, "fraction of the steps after which the rate decays exponentially to 1% (release "
                             "0.375; 1 = constant, see amodalkit/stemseg/experiments.py for why quick keeps it constant)",
                             0.0, 1.0),
        "image_fraction": Param(float, 0.5, "share of the image-sequence arm's clips synthesised from stills", 0.0, 1.0),
        "reid_steps": Param(int, 150, "RI-Tracker re-id network training steps (paper 25k)", 1, 1_000_000),
        "min_seediness": Param(float, 0.8, "DAVIS-like: clustering stops below this seediness (release 0.8)", 0.0, 1.0),
        "fast_min_seediness": Param(float, 0.95, "fast motion: clustering stops below this seediness (release's KITTI-MOTS "
                                    "configs 0.95)", 0.0, 1.0),
    },
    "maskvos": {
        "seeds": Param(int, 3, "world and initialisation seeds", 1, 50),
        "preset": Param(str, "quick", "vos world sizes: quick defaults or the paper's 480p", choices=("quick", "paper")),
        "height": Param(int, 96, "vos frame height, pixels", 32, 1080),
        "width": Param(int, 128, "vos frame width, pixels", 32, 1920),
        "n_frames": Param(int, 24, "frames per vos clip", 8, 200),
        "train_clips": Param(int, 12, "vos training videos per seed (each clustered at every pseudo-mask update)", 1, 100_000),
        "val_clips": Param(int, 2, "vos validation videos (the correspondence loss curve)", 1, 10_000),
        "test_clips": Param(int, 4, "vos test videos (J&F)", 1, 10_000),
        "crop": Param(int, 64, "training crop side, a multiple of 8 (release 256)", 16, 512),
        "clip_len": Param(int, 4, "frames per L_Corr / CRW clip (release 5)", 2, 16),
        "gap": Param(int, 4, "frames between clip frames (release 2 at YouTube-VOS' 6 fps annotation rate)", 1, 30),
        "batch": Param(int, 8, "clips per correspondence batch (release 16)", 1, 256),
        "grid": Param(int, 4, "anchor lattice side on the crop's key map (release 8 on 32 x 32)", 1, 64),
        "grid_ref": Param(int, 2, "cross-view key loss lattice side (release 4)", 1, 64),
        "net_width": Param(int, 8, "ResNet-18 base width (release 64)", 2, 64),
        "dim": Param(int, 64, "key dimension (release 128)", 4, 512),
        "value_dim": Param(int, 32, "mask-encoder value dimension (release 128)", 2, 512),
        # 1e-3: at 1e-4 (the release) nothing moves in a few hundred steps; the same rate for every arm
        "lr": Param(float, 1e-3, "Adam learning rate (release 1e-4)", 1e-6, 1.0),
        # 120 + 400 steps: 8 models a seed (phase A on vos and noise for both learners, 4 phase-B arms; the Sinkhorn
        # arm buys no verdict and runs in the smoke and gpu profiles). Phase B at 80 steps learned only the label
        # prior (the decoder erased or flooded); at 400 the decoder converges (benchmarks/maskvos_seg_budget.py).
        # Alone, a phase-B step costs 0.07 s (L_Corr), 0.14 s (+ L_Seg), 0.13 s (CRW), 0.17 s (+ L_Seg); a
        # pseudo-mask update 1.8 s (benchmarks/maskvos_gate_budget.py measures what longer phase-A runs reach)
        "corr_steps": Param(int, 120, "phase A: correspondence alone (the paper's epochs 0-300)", 1, 1_000_000),
        "seg_steps": Param(int, 400, "phase B: with or without L_Seg (epochs 300-500)", 1, 1_000_000),
        "seg_batch": Param(int, 6, "3-frame clips per L_Seg batch (release 12)", 1, 256),
        "n_clusters": Param(int, 7, "k of the pseudo-mask clustering (release 7)", 3, 64),
        "updates": Param(int, 9, "online pseudo-mask updates over the first half of phase B (paper 9)", 0, 1000),
        "crw_grid": Param(int, 5, "CRW learner: patches per side (CRW's Table E: 7)", 2, 16),
        "crw_patch": Param(int, 16, "CRW learner: patch side (Table E: 64 on a 256 crop)", 8, 256),
        "rounds": Param(int, 2, "rounds of recurrent refinement R (paper 2); rounds 0..R are all evaluated", 1, 10),
        "test_scale": Param(float, 2.0, "frames are resized by this before encoding at test", 0.25, 4.0),
        "radius": Param(float, 6.0, "memory radius on the key grid (release 12 at 480p)", 0.5, 1000.0),
        "topk": Param(int, 10, "memory top-k (release 10)", 1, 1000),
        "context": Param(int, 20, "memory context frames (release 20)", 1, 200),
        "timing_steps": Param(int, 3, "timed steps per objective (Table S2), after one warm-up step", 1, 1000),
        "sinkhorn_arm": Param(bool, False, "also train L_Seg on Sinkhorn pseudo masks (J&F of section G's alternative)"),
    },
    "data_worlds": {
        "n_clips": Param(int, 8, "test clips per world for the statistics", 1, 1000),
        "preset": Param(str, "quick", "world sizes: the quick defaults or the papers' sizes", choices=("quick", "paper")),
        "seed": Param(int, 0, "world seed", 0, 2**31 - 1),
    },
    "savos_theorem1": {
        "seeds": Param(int, 3, "number of world seeds (one clip per seed and condition)", 1, 50),
        "height": Param(int, 48, "frame height of the rigid world, pixels", 32, 512),
        "width": Param(int, 48, "frame width of the rigid world, pixels", 32, 512),
        "n_frames": Param(int, 12, "frames per clip", 4, 256),
        "n_objects": Param(int, 2, "objects per clip (the helpers that break assumptions come on top)", 2, 6),
        "steps": Param(int, 800, "optimisation steps of the free-mask fit", 1, 100_000),
        "lr": Param(float, 0.1, "Adam learning rate on the mask logits", 1e-5, 10.0),
        "init_low": Param(float, -4.0, "starting logit of the 'all background' initialisation", -20.0, 0.0),
        "init_high": Param(float, 4.0, "starting logit of the 'all object' initialisation", 0.0, 20.0),
        "chain_lengths": Param(list, [8, 16, 32, 64, 128], "clip lengths T for the App. B cost study",
                               2, 1024, item=int, min_len=2),
        "chain_size": Param(int, 32, "frame side (pixels) in the App. B cost study", 8, 256),
        "chain_repeats": Param(int, 3, "timing repeats in the App. B cost study (recorded as seeds)", 1, 20),
    },
}

_CRW_SMOKE = dict(seeds=1, height=48, width=64, n_frames=10, train_clips=2, val_clips=1, test_clips=1, crop=32, patch=16,
                  grid=3, batch=2, net_width=4, dim=8, steps=2, stride=2, test_scale=1.0, radius=3.0)
_VAE_SMOKE = dict(seeds=1, train_clips=2, stage1_clips=3, val_clips=1, test_clips=3, every=2, net_width=4, hidden=16,
                  batch=8, steps1=2, steps2=2, steps3=2, kl_begin=0)
# the supplement's schedule and widths (training "until convergence": steps bounded here)
_VAE_PAPER = dict(preset="paper", train_clips=40, stage1_clips=200, val_clips=8, test_clips=16, every=8, net_width=32,
                  hidden=256, batch=64, steps1=20_000, lr1=1e-3, steps2=10_000, steps3=5_000, kl_begin=2000, kl_alpha=0.9995)
# Table E of the CRW supplement at 480p (train_clips bounded by memory: the videos are held as uint8); 4:3 frames as
# Kinetics' (340 x 256): on 16:9 frames the release's RandomResizedCrop (area >= 0.8, ratio <= 1.3) never fits and
# every frame falls back to one centred crop
_CRW_PAPER = dict(preset="paper", height=480, width=640, n_frames=60, train_clips=100, val_clips=8, test_clips=30,
                  crop=256, patch=64, grid=7, batch=20, net_width=64, dim=128, steps=20_000, lr=1e-4, stride=4,
                  test_scale=1.0, radius=12.0, topk=10, context=20)

_SAVOS_SMOKE = dict(seeds=1, train_clips=2, val_clips=1, test_clips=3, base=2, window=4, batch=2, steps=2, pcnet_width=2)
# Table 6 and E.2: 64 x 128 crops, base 32, Adam 1e-4, 40-frame windows; "20 / 200 epochs" bounded as steps
_SAVOS_PAPER = dict(preset="paper", train_clips=200, val_clips=20, test_clips=40, crop=64, base=32, window=40, batch=24,
                    steps=20_000, lr=1e-4, pcnet_width=32)

# The `gpu` edition: the chapters whose gates no CPU budget reaches, at the step budgets the gates need, on one GPU
# (planned for an H200: 139 GiB, 16 CPU cores) in at most 8 minutes with data and evaluation. The models of its
# chapters are trained first, in parallel processes (`book run --profile gpu`: each chapter's `gpu_tasks`, identical
# models once), then the notebooks run and load them. The plan, and the CPU measurement each budget comes from:
# * CRW (crw_ablations, crw_propagation): width 16 (the width of benchmarks/crw_gate_budget.py), 6000 steps: at width
#   16 on seed 0 the correspondence margin's trend over the second half of a 2400-step run reaches the gate's 0.1 near
#   step 5600 (no earlier than 3600; results/crw_gate_budget.json). Models: 4 strides + the noise control per seed,
#   3 seeds (15 runs; crw_propagation's model is the main stride's).
# * Mask-VOS (maskvos): phase A 900 steps (benchmarks/maskvos_gate_budget.py: L_Corr passes the margin on seeds 0 and 2
#   well within 900; seed 1 did not in 900: the edition measures whether it does at the gpu width), phase B 400 steps
#   (phase B at 80 steps learns only the label prior; at 400, measured on seed 2 outside the book, the decoder keeps
#   1.12 of the read-out's foreground); the release's width 64 would be the next step. Models: phase A of both learners
#   on vos and on noise, then 5 phase-B arms (the Sinkhorn arm too), per seed, 3 seeds (27 runs, in two waves).
# Nothing here is measured on a GPU yet: the first run of the edition on one records its wall time (results/gpu/) and
# says whether these budgets fit the 8 minutes.
_GPU_CRW = dict(net_width=16, steps=6000)
GPU_CHAPTERS = ("crw_propagation", "crw_ablations", "maskvos")

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "smoke": {
        **{name: dict(_SAVOS_SMOKE) for name in ("savos_rule_baseline", "savos_subsets", "savos_embeddings",
                                                 "savos_chewing_gum")},
        "savos_ablations": dict(_SAVOS_SMOKE),
        "crw_theory": dict(seeds=1, trials=50),
        "vae_analysis": dict(_VAE_SMOKE, samples=3, n_prior=8),
        "vae_robustness": dict(_VAE_SMOKE, deo_width=4, deo_steps=2),
        "vae_inpainting": {k: v for k, v in _VAE_SMOKE.items() if k != "seeds"} | {"examples": 2},
        "crw_shortcut": dict(_CRW_SMOKE, map_steps=2),
        "crw_propagation": dict(_CRW_SMOKE, contexts=[1, 2], topks=[1, 3], radii=[2.0, 1000.0]),
        "crw_ablations": dict(_CRW_SMOKE, strides=[1, 2, 0], ttt_steps=1),
        "data_worlds": dict(n_clips=1),
        "stem_losses": dict(seeds=1, identity_trials=20, train_images=4, test_images=2, net_width=4, steps=3),
        "stem_mixing": dict(seeds=1, mixings=["xyt", "xytf", "xyff"], train_clips=2, image_count=2, val_clips=1,
                            test_clips=1, fast_height=32, fast_width=64, width=4, steps=2, reid_steps=2),
        "maskvos": dict(seeds=1, height=48, width=64, n_frames=10, train_clips=2, val_clips=1, test_clips=1, crop=32,
                        clip_len=3, gap=2, batch=2, grid=2, grid_ref=2, net_width=4, dim=8, value_dim=4, corr_steps=2,
                        seg_steps=2, seg_batch=2, updates=1, crw_grid=3, crw_patch=16, test_scale=1.0, radius=3.0,
                        timing_steps=1, sinkhorn_arm=True),
        "savos_theorem1": dict(seeds=1, height=40, width=40, n_frames=8, steps=60,
                               chain_lengths=[4, 8], chain_size=16, chain_repeats=1),
    },
    "quick": {},
    "gpu": {"crw_propagation": dict(_GPU_CRW), "crw_ablations": dict(_GPU_CRW),
            "maskvos": dict(corr_steps=900, seg_steps=400, sinkhorn_arm=True)},
    "paper": {
        **{name: dict(_SAVOS_PAPER) for name in ("savos_ablations", "savos_rule_baseline", "savos_subsets", "savos_embeddings")},
        "savos_chewing_gum": dict(_SAVOS_PAPER, window=20, batch=64, steps=3_000),
        "vae_analysis": dict(_VAE_PAPER, samples=20, n_prior=64),
        "vae_robustness": dict(_VAE_PAPER, deo_width=32, deo_size=64, deo_steps=32_000, deo_lr=1e-3),
        "vae_inpainting": {k: v for k, v in _VAE_PAPER.items() if k != "seeds"} | {"examples": 8},
        "crw_shortcut": dict(_CRW_PAPER, map_steps=20_000),
        "crw_propagation": dict(_CRW_PAPER, radii=[4.0, 8.0, 12.0, 24.0, 1000.0]),
        "crw_ablations": dict(_CRW_PAPER, strides=[1, 4, 8, 15, 0], ttt_steps=100),
        "data_worlds": dict(n_clips=2, preset="paper"),
        "stem_losses": dict(train_images=2000, test_images=500, net_width=64, steps=5000, batch=32, lr=1e-3),
        # the release's DAVIS / KITTI-MOTS sizes: 8-frame clips, batch 2; steps bounded (release 10k-160k)
        "stem_mixing": dict(preset="paper", train_clips=200, image_count=2000, val_clips=20, test_clips=30,
                            fast_height=376, fast_width=1248, width=64, steps=20_000, lr=1e-3, decay_start=0.375,
                            reid_steps=25_000),
        # the release's YouTube-VOS config at 480p (steps bounded; the release trains 500 epochs)
        "maskvos": dict(preset="paper", height=480, width=854, n_frames=60, train_clips=100, val_clips=8, test_clips=30,
                        crop=256, clip_len=5, gap=2, batch=16, grid=8, grid_ref=4, net_width=64, dim=128, value_dim=128,
                        lr=1e-4, corr_steps=30_000, seg_steps=20_000, seg_batch=12, crw_grid=7, crw_patch=64,
                        test_scale=1.0, radius=12.0),
        "savos_theorem1": dict(seeds=10, height=96, width=96, n_frames=24, n_objects=3, steps=2000,
                               chain_lengths=[8, 16, 32, 64, 128, 256], chain_size=64, chain_repeats=5),
    },
}


# the parameters a one-line summary names first (the rest are behind the toggle of the parameters cell)
_SUMMARY_KEYS = ("seeds", "seed", "steps", "steps1", "steps2", "steps3", "map_steps", "deo_steps", "crop", "height",
                 "width", "base", "net_width", "batch", "lr", "trials", "n_clips")


def summary(notebook: str, params: dict[str, Any], profile: str, wall_time_s: float | None = None,
            training: dict | None = None) -> str:
    """One line (markdown) naming the profile a chapter ran with, its main parameters and its wall time (with how
    many models it trained and how many it loaded from the model cache, when the runner recorded that).

    >>> summary("crw_theory", {"seeds": 3, "trials": 2000, "dim": 128}, "quick", 6.8)
    'Ran with the **quick** profile: seeds 3, trials 2000 (3 parameters in all, from `amodalkit/profiles.py`: show the cell's source for the list) in 6.8 s.'
    """
    main = [f"{k} {params[k]}" for k in _SUMMARY_KEYS if k in params][:7]
    text = f"Ran with the **{profile}** profile"
    if main:
        text += ": " + ", ".join(main)
    text += f" ({len(params)} parameters in all, from `amodalkit/profiles.py`: show the cell's source for the list)"
    if wall_time_s is not None:
        text += f" in {wall_time_s:.0f} s" if wall_time_s >= 10 else f" in {wall_time_s:.1f} s"
        if training and training.get("trained", 0) + training.get("loaded", 0):
            text += (f" ({training['trained']} models trained, {training['train_seconds']:.0f} s of it; "
                     f"{training['loaded']} loaded from the model cache)")
    return text + "."


def notebook_parameters(notebook: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """A notebook's parameters as a dict, read from its namespace (``globals()`` after its parameters cell), for the
    library functions that build a chapter's recipe and data from them (e.g. :func:`amodalkit.crw.chapter_recipe`)."""
    missing = [name for name in NOTEBOOKS[notebook] if name not in namespace]
    if missing:
        raise ParameterError(f"{notebook}: parameters {missing} are not defined (run the parameters cell first)")
    return {name: namespace[name] for name in NOTEBOOKS[notebook]}


def profile_names() -> list[str]:
    return list(PROFILES)


# a profile that covers only some chapters (the others are not part of its edition)
PROFILE_CHAPTERS = {"gpu": GPU_CHAPTERS}


def chapters_of(profile: str, names: list[str]) -> list[str]:
    """The chapters of ``names`` that ``profile`` covers (all, unless :data:`PROFILE_CHAPTERS` restricts it)."""
    return [n for n in names if n in PROFILE_CHAPTERS.get(profile, names)]


def resolve(notebook: str, profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The validated parameters of ``notebook`` under ``profile``, with ``overrides`` on top.

    Raises:
        ParameterError: unknown notebook, profile or parameter, or a bad value.
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; expected one of {profile_names()}")
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"no parameters declared for notebook {notebook!r}; known: {sorted(NOTEBOOKS)}")
    spec = NOTEBOOKS[notebook]
    values = {name: p.default for name, p in spec.items()}
    for source, extra in (("profile " + profile, PROFILES[profile].get(notebook, {})), ("-p", overrides or {})):
        for name, value in extra.items():
            if name not in spec:
                raise ParameterError(
                    f"{notebook}: unknown parameter {name!r} (from {source}); expected one of {sorted(spec)}"
                )
            values[name] = spec[name].check(notebook, name, value)
    return values

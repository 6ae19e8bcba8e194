"""The claim registry and the rules that turn recorded measurements into verdicts.

Every claim of the five supplements that an experiment can test has an id, its source, the
paper's figure, the section (notebook) that tests it, and a rule. A rule reads per-seed
measurements, named ``"<notebook>/<measurement>"``, from the results of one profile and gives:

* ``reproduced``: the claim holds for every seed (a threshold), or beyond the spread (a direction);
* ``not reproduced``: it fails for every seed, or the opposite direction holds beyond the spread;
* ``within noise``: the seeds disagree, or the difference is smaller than the spread;
* ``not run yet``: a measurement the rule needs has not been recorded.

A comparison of two measurements taken on the same seeds is paired: its spread is the sample std of the
per-seed differences. Otherwise the spread of a difference of two means is sqrt(std_a^2 + std_b^2).
Verdicts are only ever computed here; nothing types one by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
WITHIN_NOISE = "within noise"
NOT_RUN = "not run yet"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, WITHIN_NOISE, NOT_RUN)


def _values(results: dict[str, dict[str, Any]], measure: str) -> list[float] | None:
    notebook, _, name = measure.partition("/")
    entry = results.get(notebook, {}).get("measurements", {}).get(name)
    if not entry or not entry.get("values"):
        return None
    return [float(v) for v in entry["values"]]


def _by_seed(results: dict[str, dict[str, Any]], measure: str) -> dict[int, float] | None:
    notebook, _, name = measure.partition("/")
    entry = results.get(notebook, {}).get("measurements", {}).get(name)
    if not entry or not entry.get("values") or len(entry.get("seeds", [])) != len(entry["values"]):
        return None
    return {int(s): float(v) for s, v in zip(entry["seeds"], entry["values"])}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def describe(values: list[float] | None) -> str:
    if values is None:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.4g} ± {std:.2g} (n={len(values)})"


@dataclass(frozen=True)
class Bound:
    """Every seed's value of ``measure`` lies in [low, high] (either end may be open: None)."""

    measure: str
    low: float | None = None
    high: float | None = None

    def measures(self) -> tuple[str, ...]:
        return (self.measure,)

    def text(self) -> str:
        if self.high is None:
            condition = f"≥ {self.low:g}"
        elif self.low is None:
            condition = f"≤ {self.high:g}"
        else:
            condition = f"in [{self.low:g}, {self.high:g}]"
        return f"`{self.measure}` {condition} for every seed"

    def _holds(self, x: float) -> bool:
        return (self.low is None or x >= self.low) and (self.high is None or x <= self.high)

    def verdict(self, results) -> str:
        v = _values(results, self.measure)
        if v is None:
            return NOT_RUN
        holds = [self._holds(x) for x in v]
        if all(holds):
            return REPRODUCED
        if not any(holds):
            return NOT_REPRODUCED
        return WITHIN_NOISE


def AtLeast(measure: str, threshold: float) -> Bound:  # noqa: N802 (reads as a rule name)
    return Bound(measure, low=threshold)


def AtMost(measure: str, threshold: float) -> Bound:  # noqa: N802
    return Bound(measure, high=threshold)


def Between(measure: str, low: float, high: float) -> Bound:  # noqa: N802
    return Bound(measure, low=low, high=high)


@dataclass(frozen=True)
class Greater:
    """a > b beyond the spread over seeds (a direction beyond noise).

    Paired when both are measured on the same seeds (each seed one world and initialisation, so the
    two numbers of a seed share their data): the mean of the per-seed differences must exceed their
    sample std. Otherwise unpaired: mean(a) - mean(b) must exceed sqrt(std_a^2 + std_b^2).
    """

    a: str
    b: str

    def measures(self) -> tuple[str, ...]:
        return (self.a, self.b)

    def text(self) -> str:
        return f"`{self.a}` > `{self.b}` beyond the spread over seeds (of the per-seed differences when paired)"

    def verdict(self, results) -> str:
        va, vb = _values(results, self.a), _values(results, self.b)
        if va is None or vb is None:
            return NOT_RUN
        sa_, sb_ = _by_seed(results, self.a), _by_seed(results, self.b)
        if sa_ is not None and sb_ is not None and sa_.keys() == sb_.keys() and len(sa_) > 1:
            diff, spread = mean_std([sa_[k] - sb_[k] for k in sorted(sa_)])
        else:
            (ma, sa), (mb, sb) = mean_std(va), mean_std(vb)
            spread = math.hypot(sa, sb)
            diff = ma - mb
        if diff > spread and diff > 0:
            return REPRODUCED
        if -diff > spread and diff < 0:
            return NOT_REPRODUCED
        return WITHIN_NOISE


@dataclass(frozen=True)
class AllOf:
    """Every sub-rule reproduced; any not reproduced fails the whole; missing data: not run yet."""

    rules: tuple

    def measures(self) -> tuple[str, ...]:
        return tuple(m for r in self.rules for m in r.measures())

    def text(self) -> str:
        return "; and ".join(r.text() for r in self.rules)

    def verdict(self, results) -> str:
        verdicts = [r.verdict(results) for r in self.rules]
        if NOT_RUN in verdicts:
            return NOT_RUN
        if NOT_REPRODUCED in verdicts:
            return NOT_REPRODUCED
        if all(v == REPRODUCED for v in verdicts):
            return REPRODUCED
        return WITHIN_NOISE


@dataclass(frozen=True)
class Claim:
    """One testable claim: where it comes from, what the paper shows, and how it is judged.

    notebook: the section that tests it (also the prefix of its measurements); paper_figure:
    the paper's number(s) or "qualitative"; note: what the rule's tolerance means, where needed.
    """

    id: str
    paper: str
    source: str
    text: str
    paper_figure: str
    notebook: str
    rule: Any
    note: str = ""

    def verdict(self, results: dict[str, dict[str, Any]]) -> str:
        return self.rule.verdict(results)

    def ours(self, results) -> str:
        """The measured values behind the verdict, mean ± std over seeds, one line per measure."""
        parts = []
        for m in dict.fromkeys(self.rule.measures()):
            v = _values(results, m)
            if v is not None:
                parts.append(f"{m.split('/', 1)[1]}: {describe(v)}")
        return "; ".join(parts) if parts else "–"


SAVOS, VAE, STEM, MASKVOS, CRW = (
    "SaVos (000_665905df8e0fd575)",
    "Amodal-VAE (001_2fd3ecd5938206ae)",
    "STEm-Seg (002_f1a06c988e21c213)",
    "Mask-VOS (003_9c038fe6d0f79bee)",
    "CRW (004_0827d3d1edafdb89)",
)

_THM = "savos_theorem1"
_ABL = "savos_ablations"


def _savos_ablation(name: str, better: str, worse: str, figure: str, text: str, source: str) -> Claim:
    return Claim(
        name, SAVOS, source, text, figure, _ABL,
        AllOf(tuple(Greater(f"{_ABL}/{world}.occ_miou.{better}", f"{_ABL}/{world}.occ_miou.{worse}")
                    for world in ("fishbowl", "street"))),
    )


CLAIMS: tuple[Claim, ...] = (
    # ---------------------------------------------------------------- SaVos
    Claim("savos.t1.full-best", SAVOS, "Table 1",
       "the full model (consistency + bi-directional + temporal embedding) has the best occluded mIoU on each dataset",
       "FISHBOWL 0.7155, KINS 0.3132 (occluded mIoU, best of 4 rows)", _ABL,
       AllOf(tuple(Greater(f"{_ABL}/{w}.occ_miou.full", f"{_ABL}/{w}.occ_miou.{v}")
                   for w in ("fishbowl", "street") for v in ("no_consistency", "no_bidirectional", "no_temporal")))),
    _savos_ablation("savos.t1.consistency", "full", "no_consistency", "0.7155 vs 0.6447 (FISHBOWL), 0.3132 vs 0.2982 (KINS)",
                    "removing the consistency loss L_C lowers occluded mIoU", "Table 1"),
    _savos_ablation("savos.t1.bidirectional", "full", "no_bidirectional", "0.7155 vs 0.6849 (FISHBOWL), 0.3132 vs 0.2962 (KINS)",
                    "removing bi-directional prediction lowers occluded mIoU", "Table 1"),
    _savos_ablation("savos.t1.temporal", "full", "no_temporal", "0.7155 vs 0.6894 (FISHBOWL), 0.3132 vs 0.2792 (KINS)",
                    "removing the temporal embedding lowers occluded mIoU", "Table 1"),
    _savos_ablation("savos.t2.architecture", "savos_arch_deocc_loss", "deocc_arch_deocc_loss",
                    "0.6826 vs 0.6502 (FISHBOWL), 0.2040 vs 0.1790 (KINS)",
                    "with the Self-Deocclusion loss, the SaVos architecture beats the Self-Deocclusion architecture (occluded mIoU)", "Table 2"),
    _savos_ablation("savos.t2.loss", "full", "savos_arch_deocc_loss", "0.7155 vs 0.6826 (FISHBOWL), 0.3132 vs 0.2040 (KINS)",
                    "on the SaVos architecture, the SaVos loss beats the Self-Deocclusion loss", "Table 2"),
    Claim("savos.t3.flow", SAVOS, "Table 3", "removing the flow input hurts most (below removing the image)",
       "no flow 0.6188 < no image 0.6634 (FISHBOWL); 0.1525 < 0.2172 (KINS)", _ABL,
       AllOf(tuple(Greater(f"{_ABL}/{w}.occ_miou.no_image", f"{_ABL}/{w}.occ_miou.no_flow") for w in ("fishbowl", "street")))),
    _savos_ablation("savos.t3.image", "full", "no_image", "0.7155 vs 0.6634 (FISHBOWL), 0.3132 vs 0.2172 (KINS)",
                    "removing the image input hurts (below full)", "Table 3"),
    Claim("savos.t4.rule-baseline", SAVOS, "Table 4, Alg. 1", "SaVos beats rule-based temporal aggregation for k = 3 and k = 5",
       "0.7155 vs 0.3937 / 0.3860 (FISHBOWL); 0.3132 vs 0.1522 / 0.1487 (KINS)", "savos_rule_baseline",
       AllOf(tuple(Greater(f"savos_rule_baseline/{w}.occ_miou.savos", f"savos_rule_baseline/{w}.occ_miou.rule_k{k}")
                   for w in ("fishbowl", "street") for k in (3, 5)))),
    Claim("savos.t4.k3-vs-k5", SAVOS, "Table 4", "with estimated flow, k = 3 is not worse than k = 5",
       "k=3 0.3937 vs k=5 0.3860 (FISHBOWL); 0.1522 vs 0.1487 (KINS)", "savos_rule_baseline",
       AllOf(tuple(AtLeast(f"savos_rule_baseline/{w}.occ_miou.k3_minus_k5", 0.0) for w in ("fishbowl", "street"))),
       note="k3_minus_k5 is the per-seed difference; ≥ 0 for every seed"),
    Claim("savos.f1a.alpha", SAVOS, "Fig. 1a", "the forward alpha is low at the start of a clip and rises; the backward alpha mirrors it",
       "qualitative (curve)", "savos_embeddings",
       AllOf((AtLeast("savos_embeddings/alpha.forward_rise", 0.0), AtLeast("savos_embeddings/alpha.backward_fall", 0.0))),
       note="rise = mean alpha over the last third minus the first third of frames"),
    Claim("savos.f1b.type-clusters", SAVOS, "Fig. 1b, D",
       "spatiotemporal embeddings cluster by object type (kNN type accuracy and silhouette far above chance)",
       "qualitative (tSNE)", "savos_embeddings",
       AllOf((Greater("savos_embeddings/types.knn_accuracy", "savos_embeddings/types.chance_accuracy"),
              AtLeast("savos_embeddings/types.silhouette", 0.1)))),
    Claim("savos.thm1.superset", SAVOS, "Thm. 1, C.1",
       "with L_M = L_C = 0 and assumptions 1-3, the predicted region contains the amodal mask",
       "proof (no numbers)", _THM,
       AtLeast(f"{_THM}/superset.min_recall", 0.99),
       note="world with assumption 4 broken (glued exterior square); min over objects, frames and both initialisations"),
    Claim("savos.thm1.exact", SAVOS, "Thm. 1, C.1", "adding assumption 4, the prediction equals the amodal mask",
       "proof (no numbers)", _THM, AtLeast(f"{_THM}/exact.min_iou", 0.99),
       note="assumptions 1-4 hold; min IoU over objects, frames and both initialisations"),
    Claim("savos.thm1.lm-insufficient", SAVOS, "C.1 (Eq. 9)", "L_M alone leaves the occluded region unconstrained",
       "proof (no numbers)", _THM,
       AllOf((AtLeast(f"{_THM}/lm_only.free_pixels_at_init", 0.99), AtLeast(f"{_THM}/lm_only.occluded_recall_gap", 0.5))),
       note="free pixels keep their starting value; the occluded part found differs between the two initialisations"),
    Claim("savos.thm1.violations", SAVOS, "Thm. 1",
       "breaking assumption 3 (a pixel never visible) or 4 (a co-moving exterior point never in background) breaks exact recovery where the theorem says",
       "proof (no numbers)", _THM,
       AllOf((AtLeast(f"{_THM}/violations.never_visible_match", 0.95), AtLeast(f"{_THM}/violations.glued_match", 0.95))),
       note="IoU between the pixels left undetermined and the pixels the theorem predicts (never visible / co-moving never background)"),
    Claim("savos.b.chain-cost", SAVOS, "B", "the chained consistency loss costs O(T) where L_complete costs O(T^2)",
       "argument (no numbers)", _THM,
       AllOf((Between(f"{_THM}/cost.chain_memory_slope", 0.8, 1.2), Between(f"{_THM}/cost.complete_memory_slope", 1.8, 2.2),
              AtMost(f"{_THM}/cost.chain_time_slope", 1.3), AtLeast(f"{_THM}/cost.complete_time_slope", 1.6))),
       note="log-log slopes of autograd memory and time against T"),
    Claim("savos.t5.subsets", SAVOS, "Table 5, D",
       "occluded mIoU on objects that break the 'every pixel visible in some frame' assumption is not much lower than on the rest",
       "0.3104 (breaking) vs 0.3250 (rest)", "savos_subsets",
       AtMost("savos_subsets/street.occ_miou.rest_minus_breaking", 0.05), note="a gap of at most 0.05 counts as not much lower"),
    Claim("savos.t7t8.metrics-agree", SAVOS, "Tables 7, 8", "frame-level and object-level mIoU rank the methods the same",
       "same ranking in both tables", _ABL, AtLeast(f"{_ABL}/metrics.rank_agreement", 1.0),
       note="1 when the two metrics give the same ranking of methods"),
    Claim("savos.f2.classless", SAVOS, "F.2",
       "on classless data (Chewing Gum) an image-level method fails where SaVos completes the mask",
       "qualitative (Fig. 4)", "savos_chewing_gum",
       Greater("savos_chewing_gum/occ_miou.savos", "savos_chewing_gum/occ_miou.deocclusion")),
    # ---------------------------------------------------------------- Amodal-VAE
    Claim("vae.f3.prior-samples", VAE, "Fig. 3", "decoded prior samples look like the training shapes",
       "qualitative", "vae_analysis",
       Greater("vae_analysis/prior.best_train_iou.trained", "vae_analysis/prior.best_train_iou.untrained")),
    Claim("vae.f4.posterior-width", VAE, "Fig. 4", "on active latent dimensions the posterior std grows with occlusion: none < 1-50% < >50%",
       "qualitative (bar plot)", "vae_analysis",
       AllOf((Greater("vae_analysis/posterior_std.occ_1_50", "vae_analysis/posterior_std.occ_0"),
              Greater("vae_analysis/posterior_std.occ_50_100", "vae_analysis/posterior_std.occ_1_50")))),
    Claim("vae.f4.inactive-dims", VAE, "Fig. 4", "most latent dimensions are inactive, std ≈ 1 whatever the occlusion",
       "qualitative", "vae_analysis", AtLeast("vae_analysis/latent.inactive_fraction", 0.5)),
    Claim("vae.f1.best-of-20", VAE, "Fig. 1", "the best of 20 posterior samples beats the posterior mode in mIoU",
       "curve above the mode's at every visible ratio", "vae_analysis",
       Greater("vae_analysis/miou.best_of_samples", "vae_analysis/miou.mode")),
    Claim("vae.f1.gap-shrinks", VAE, "Fig. 1", "that gap shrinks as the visible ratio grows", "qualitative", "vae_analysis",
       Greater("vae_analysis/gap.low_visibility", "vae_analysis/gap.high_visibility")),
    Claim("vae.t1.beats-deocclusion", VAE, "Table 1",
       "from predicted (imperfect) visible masks, Amodal-VAE beats Self-Deocclusion on full and invisible mIoU",
       "full 86.03 vs 84.94, invisible 60.71 vs 52.93", "vae_robustness",
       AllOf((Greater("vae_robustness/pred.full_miou.vae", "vae_robustness/pred.full_miou.deocclusion"),
              Greater("vae_robustness/pred.inv_miou.vae", "vae_robustness/pred.inv_miou.deocclusion")))),
    Claim("vae.t1.robust", VAE, "Table 1", "going from ground-truth to predicted visible masks, invisible mIoU drops less than full mIoU",
       "full drops 8.65, invisible 2.14 (points)", "vae_robustness",
       Greater("vae_robustness/drop.full_miou", "vae_robustness/drop.inv_miou")),
    Claim("vae.s31.kl-anneal", VAE, "3.1", "KL annealing avoids posterior collapse (more active dimensions, better completion than a constant weight)",
       "stated, no numbers", "vae_analysis",
       AllOf((Greater("vae_analysis/anneal.active_dims", "vae_analysis/constant.active_dims"),
              Greater("vae_analysis/anneal.miou", "vae_analysis/constant.miou")))),
    Claim("vae.s31.threshold", VAE, "3.1", "the binarisation threshold tuned on validation is low (paper: 0.1)", "0.1",
       "vae_analysis", AtMost("vae_analysis/threshold.tuned", 0.3), note="low = at most 0.3"),
    # ---------------------------------------------------------------- STEm-Seg
    Claim("stem.lovasz.iou", STEM, "I",
       "the Lovasz hinge is a convex surrogate of IoU: with ±1 logits it equals 2(1 - IoU), and training with it gives a better IoU than cross-entropy under class imbalance",
       "identity + qualitative", "stem_losses",
       AllOf((AtMost("stem_losses/identity.max_abs_error", 1e-6),
              Greater("stem_losses/imbalanced.iou.lovasz", "stem_losses/imbalanced.iou.bce")))),
    Claim("stem.ti.free-dims", STEM, "Table I", "at equal embedding size, a free dimension beats a temporal coordinate (DAVIS-like data)",
       "xyf 62.8 vs xyt 62.6; xyff 64.4 vs xytf 64.2 (J&F)", "stem_mixing",
       Greater("stem_mixing/davis_like.jf.xyff", "stem_mixing/davis_like.jf.xytf")),
    Claim("stem.ti.time-on-fast-motion", STEM, "Table I",
       "on fast-motion data with objects entering and leaving (KITTI-MOTS-like), the temporal coordinate is competitive",
       "xyt 72.5 / 48.9 vs xyff 73.2 / 47.3 (sMOTSA car / pedestrian)", "stem_mixing",
       AtMost("stem_mixing/fast_motion.gap.xyff_minus_xyt", 0.02), note="competitive = within 0.02"),
    Claim("stem.aug.image-sequences", STEM, "II", "adding sequences synthesised from static images improves results",
       "stated", "stem_mixing", Greater("stem_mixing/aug.jf.with_images", "stem_mixing/aug.jf.video_only")),
    Claim("stem.iii.baselines", STEM, "III", "STEm-Seg beats the OF-Tracker and RI-Tracker baselines", "main paper Sec. 4.4",
       "stem_mixing", AllOf((Greater("stem_mixing/baselines.jf.stemseg", "stem_mixing/baselines.jf.of_tracker"),
                             Greater("stem_mixing/baselines.jf.stemseg", "stem_mixing/baselines.jf.ri_tracker")))),
    # ---------------------------------------------------------------- Mask-VOS
    Claim("maskvos.c.refinement", MASKVOS, "C, Fig. S5", "J&F improves from round 0 to 1 to 2 of recurrent refinement",
       "qualitative (Fig. S5; main Table 5e)", "maskvos",
       AllOf((Greater("maskvos/jf.round1", "maskvos/jf.round0"), Greater("maskvos/jf.round2", "maskvos/jf.round1")))),
    Claim("maskvos.b.pseudo-updates", MASKVOS, "B, Figs. S1-S4", "online pseudo-mask updates improve the pseudo masks (IoU to ground truth)",
       "qualitative", "maskvos", Greater("maskvos/pseudo_iou.final", "maskvos/pseudo_iou.initial")),
    Claim("maskvos.s2.overhead", MASKVOS, "Table S2", "adding L_Seg costs under about 10% more training time per epoch",
       "about 8%", "maskvos", AtMost("maskvos/time.seg_overhead", 0.10)),
    Claim("maskvos.s2.faster-than-crw", MASKVOS, "Table S2", "per epoch it trains faster than CRW at equal backbone",
       "Table S2", "maskvos", Greater("maskvos/time.crw_epoch", "maskvos/time.maskvos_epoch")),
    Claim("maskvos.s2.seg-helps", MASKVOS, "Table S2", "adding L_Seg improves J&F over correspondence alone", "Table S2",
       "maskvos", Greater("maskvos/jf.with_seg", "maskvos/jf.correspondence_only")),
    Claim("maskvos.g.clustering", MASKVOS, "G", "optimal-transport (Sinkhorn) clustering vs k-means for pseudo masks (the authors' future work)",
       "future work (no numbers)", "maskvos", Greater("maskvos/pseudo_iou.sinkhorn", "maskvos/pseudo_iou.kmeans")),
    # ---------------------------------------------------------------- CRW
    Claim("crw.a.identical-negatives", CRW, "A",
       "false negatives identical to the positive never flip the sign of the positive's gradient (lambda_u >= 0), checked with autograd",
       "proof", "crw_theory",
       AllOf((AtLeast("crw_theory/lambda_u.min", -1e-9), AtMost("crw_theory/lambda_u.max_abs_error", 1e-5))),
       note="lambda_u read off the autograd gradient in float64; >= 0 up to rounding (1e-9)"),
    Claim("crw.c.shortcut", CRW, "C", "a single shared feature map lets the network solve the walk by a shortcut (even on random-noise videos)",
       "qualitative", "crw_shortcut",
       AllOf((Greater("crw_shortcut/loss_drop.single_map", "crw_shortcut/loss_drop.patches"),
              AtMost("crw_shortcut/jf_gain.single_map", 0.02)))),
    Claim("crw.d.frame-rate", CRW, "D", "an intermediate frame rate is best; the same image repeated (infinite rate) is worst",
       "2: 65.9, 4: 67.5, 8: 67.6, 30: 62.3, ∞: 57.5 (J&F)", "crw_ablations",
       AllOf((Greater("crw_ablations/frame_rate.jf.intermediate", "crw_ablations/frame_rate.jf.densest"),
              Greater("crw_ablations/frame_rate.jf.densest", "crw_ablations/frame_rate.jf.repeated")))),
    Claim("crw.f.local-attention", CRW, "F", "restricting sources to a spatial radius improves J&F", "+4% (ImageNet baseline)",
       "crw_propagation", Greater("crw_propagation/jf.local", "crw_propagation/jf.global")),
    Claim("crw.f.joint-topk", CRW, "F", "top-k over all source nodes at once beats top-k per frame", "+3% (ImageNet baseline)",
       "crw_propagation", Greater("crw_propagation/jf.joint_topk", "crw_propagation/jf.per_frame_topk")),
    Claim("crw.f1.context", CRW, "F.1", "more context frames improve J&F", "curve rising with m", "crw_propagation",
       Greater("crw_propagation/jf.context_max", "crw_propagation/jf.context_min")),
    Claim("crw.g.res3", CRW, "G", "res3 features propagate labels at least as well as res4", "stated", "crw_ablations",
       AtLeast("crw_ablations/res3_minus_res4.jf", 0.0)),
    Claim("crw.h.test-time-training", CRW, "H", "test-time training improves J&F", "main paper", "crw_ablations",
       Greater("crw_ablations/jf.test_time_training", "crw_ablations/jf.no_test_time_training")),
    Claim("crw.b.beats-untrained", CRW, "B", "trained CRW features beat untrained features and raw pixels for label propagation",
       "67.6 J&F (trained, DAVIS-17 val)", "crw_ablations",
       AllOf((Greater("crw_ablations/jf.trained", "crw_ablations/jf.untrained"),
              Greater("crw_ablations/jf.trained", "crw_ablations/jf.pixels")))),
)

CLAIMS_BY_ID = {c.id: c for c in CLAIMS}
if len(CLAIMS_BY_ID) != len(CLAIMS):
    raise RuntimeError("duplicate claim ids in the registry")


def claims_for(notebook: str) -> list[Claim]:
    return [c for c in CLAIMS if c.notebook == notebook]


def verdict_table(results: dict[str, dict[str, Any]], claims=CLAIMS) -> list[dict[str, str]]:
    """One row per claim: id, claim, paper, ours, verdict, rule, notebook."""
    return [
        dict(id=c.id, paper=c.paper, source=c.source, claim=c.text, paper_figure=c.paper_figure,
             ours=c.ours(results), verdict=c.verdict(results), rule=c.rule.text(), note=c.note, notebook=c.notebook)
        for c in claims
    ]


# symbols from common text fonts (DejaVu has them), not emoji: the offline book may have no emoji font
_MARK = {REPRODUCED: "✓ reproduced", NOT_REPRODUCED: "✗ not reproduced", WITHIN_NOISE: "≈ within noise", NOT_RUN: "… not run yet"}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def claims_markdown(results: dict[str, dict[str, Any]], profile: str, chapters: set[str]) -> str:
    """The book's claims page (MyST markdown) for the results of one profile.

    Args:
        results: ``{notebook: results}`` as from :func:`amodalkit.results.load_results`.
        profile: the profile the results come from (named on the page).
        chapters: the notebooks that are chapters of this book (linked from the table).
    """
    rows = verdict_table(results)
    counts = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    lines = [
        "# Claims and verdicts",
        "",
        f"Every testable claim of the five supplements, with the paper's figure, ours and a verdict computed "
        f"by `amodalkit.claims` from the recorded results of the **{profile}** profile (`results/{profile}/`). "
        "Nothing on this page is typed by hand: it is generated when the book is built.",
        "",
        "- **reproduced**: the claim holds for every seed (a threshold), or beyond the spread over seeds (a direction);",
        "- **not reproduced**: it fails for every seed, or the opposite direction holds beyond the spread;",
        "- **within noise**: the seeds disagree, or the difference is smaller than the spread: the std of the "
        "per-seed differences when both sides are measured on the same seeds (paired), else sqrt(std_a² + std_b²);",
        "- **not run yet**: no chapter has recorded what the rule needs.",
        "",
        "Ours is mean ± sample std over seeds (n = number of seeds).",
        "",
        "| verdict | count |",
        "| --- | --- |",
    ]
    lines += [f"| {_MARK[v]} | {counts[v]} |" for v in VERDICTS]
    for paper in dict.fromkeys(r["paper"] for r in rows):
        lines += ["", f"## {paper}", "", "| claim | verdict | ours | paper |", "| --- | --- | --- | --- |"]
        for r in (r for r in rows if r["paper"] == paper):
            section = f"{{doc}}`chapters/{r['notebook']}`" if r["notebook"] in chapters else f"`{r['notebook']}` (not written yet)"
            claim = f"`{r['id']}` ({r['source']}): {r['claim']}. Section: {section}"
            lines.append("| " + " | ".join(_cell(x) for x in (claim, _MARK[r["verdict"]], r["ours"], r["paper_figure"])) + " |")
    lines += ["", "## How each verdict is computed", "",
              "Measurements are named `<notebook>/<measurement>`; each rule reads the per-seed values recorded under "
              f"`results/{profile}/<notebook>.json`.", ""]
    for r in rows:
        lines.append(f"- `{r['id']}`: {r['rule']}" + (f". *{r['note']}*" if r["note"] else ""))
    return "\n".join(lines) + "\n"


def show_verdicts(recorder):
    """Markdown table of the verdicts of one notebook's claims, from its in-memory measurements."""
    from IPython.display import Markdown

    results = {recorder.notebook: recorder.as_results()}
    rows = verdict_table(results, claims_for(recorder.notebook))
    lines = ["| claim | ours | verdict |", "| --- | --- | --- |"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(x) for x in (f"`{r['id']}`: {r['claim']}", r["ours"], _MARK[r["verdict"]])) + " |")
    lines += ["", "Rules: " + "; ".join(f"`{r['id']}`: {r['rule']}" for r in rows) + "."]
    return Markdown("\n".join(lines))

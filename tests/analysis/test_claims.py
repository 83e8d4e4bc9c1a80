"""analysis.claims: the thesis's ablation claims against constructed data with known verdicts."""

from __future__ import annotations

from analysis import claims
from analysis.ablations import find_ablations
from analysis.load import Store


def _assess(frames, key, values, seeds=(0, 1, 2), **per_value):
    specs = []
    for v in values:
        for s in seeds:
            specs.append({"recipe": "tort", "dataset": "digits", "seed": s, "sweep": "ab",
                          "overrides": {key: v}, "axes": {key: v}, **{k: f(v) for k, f in per_value.items()}})
    (ab,) = find_ablations(Store.from_frames(*frames(specs)))
    (a,) = claims.assess(ab)
    return a


def test_no_effect_claim_consistent_when_nothing_differs(frames):
    a = _assess(frames, "loss.label_smoothing", [0.0, 0.1], seeds=(0, 1, 2, 3), noise=lambda v: 0.3)
    assert a.verdict == claims.CONSISTENT
    assert "remain compatible" in a.data_says  # absence of evidence is worded as such, with its bound


def test_no_effect_claim_contradicted_by_a_real_effect(frames):
    a = _assess(frames, "optim.min_lr", [1e-6, 0.0], plateau=lambda v: 40.0 if v else 55.0, noise=lambda v: 0.3)
    assert a.verdict == claims.CONTRADICTED and "differs from the default" in a.data_says


def test_epochs_claim_known_increments(frames):
    gain = {100: 40.0, 200: 41.2, 300: 42.5}
    a = _assess(frames, "epochs", list(gain), seeds=(0, 1, 2, 3), plateau=lambda v: gain[v], noise=lambda v: 0.2,
                tau=lambda v: 0.5)
    assert a.verdict == claims.CONSISTENT and "100→200" in a.data_says and "(thesis: +1.2)" in a.data_says
    flat = _assess(frames, "epochs", [100, 200, 300], seeds=(0, 1, 2, 3), noise=lambda v: 0.2, tau=lambda v: 0.5)
    assert flat.verdict == claims.NOT_SUPPORTED


def test_epochs_claim_on_other_epoch_counts_is_not_judged(frames):
    a = _assess(frames, "epochs", [2, 4], seeds=(0, 1))
    assert a.verdict == claims.INSUFFICIENT and "100/200/300" in a.data_says


def test_mask_scale_correlation(frames):
    # final distillation loss ≈ 1 + level·e^(-8/10): rises with the mask scale by construction
    values = [[0.1, 0.3], [0.2, 0.4], [0.3, 0.5], [0.4, 0.6], [0.5, 0.7]]
    a = _assess(frames, "views.mask_scale", values, distill=lambda v: (10.0 * sum(v), 10.0))
    assert a.verdict == claims.CONSISTENT and "Spearman ρ" in a.data_says
    none = _assess(frames, "views.mask_scale", values, distill=lambda v: (2.0, 10.0))
    assert none.verdict in (claims.DIRECTION, claims.NOT_SUPPORTED)


def test_teacher_temp_faster_convergence(frames):
    a = _assess(frames, "loss.teacher_temp", [0.02, 0.04, 0.08], seeds=(0, 1, 2, 3, 4),
                distill=lambda v: (5.0, 1.0 if v < 0.04 else 4.0))
    assert a.verdict == claims.CONSISTENT
    assert "Values above the default: 0 of 1" in " ".join(a.details)


def test_faster_claim_with_three_seeds_names_the_floor(frames):
    a = _assess(frames, "loss.student_temp", [0.1, 0.3], distill=lambda v: (5.0, 1.0 if v > 0.1 else 4.0))
    assert a.verdict == claims.DIRECTION
    assert "cannot reach p < 0.05" in " ".join(a.details)


def test_loss_subsets(frames):
    plateau = {("distill",): 30.0, ("supervised",): 28.0, ("rotation",): 5.0, ("distill", "rotation"): 34.0,
               ("distill", "supervised", "rotation"): 45.0}
    a = _assess(frames, "loss.enabled", [list(k) for k in plateau], seeds=(0, 1, 2, 3),
                plateau=lambda v: plateau[tuple(v)], noise=lambda v: 0.4)
    assert "all three" in a.data_says and "the highest mean" in a.data_says
    assert a.verdict in (claims.CONSISTENT, claims.DIRECTION, claims.NOT_SUPPORTED)
    assert a.metric == "final_knn_top1"


def test_keys_without_a_claim(frames):
    a = _assess(frames, "heads.out_dim", [128, 256], seeds=(0,))
    assert a.verdict == claims.NO_CLAIM

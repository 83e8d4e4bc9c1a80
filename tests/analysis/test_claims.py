"""analysis.claims: the thesis's ablation claims against constructed data with known verdicts."""

from __future__ import annotations

import pytest

from analysis import claims
from analysis.ablations import find_ablations
from analysis.errors import AnalysisError
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


def test_no_effect_claim_equivalent_when_nothing_differs(frames):
    a = _assess(frames, "loss.label_smoothing", [0.0, 0.1], seeds=range(6), noise=lambda v: 0.1, tau=lambda v: 0.5)
    assert a.verdict == claims.EQUIVALENT and a.shown == "equivalent within ±1"
    assert "TOST p" in a.data_says and a.comparability == "not comparable (profile demo)"


def test_no_effect_claim_flips_to_different_when_a_two_sd_effect_is_planted(frames):
    # SD 0.5 point, 10 seeds, margin ±1: equivalent without an effect; a 2-SD (1 point) shift in
    # one of two variants makes it "different" (the old rule said "consistent" here 73–98% of the time)
    seeds = range(10)
    null = _assess(frames, "optim.weight_decay", [0.0, 0.04, 0.1], seeds=seeds, noise=lambda v: 0.5,
                   tau=lambda v: 0.5)
    assert null.verdict == claims.EQUIVALENT
    planted = _assess(frames, "optim.weight_decay", [0.0, 0.04, 0.1], seeds=seeds, noise=lambda v: 0.5,
                      tau=lambda v: 0.5, plateau=lambda v: 40.0 + (1.0 if v == 0.1 else 0.0))
    assert planted.verdict == claims.DIFFERENT and planted.shown == "different"


def test_no_effect_claim_with_few_noisy_seeds_is_inconclusive_with_a_margin(frames):
    a = _assess(frames, "views.rot_prob", [0.5, 1.0], seeds=(0, 1), noise=lambda v: 2.0)
    assert a.verdict == claims.INCONCLUSIVE
    assert a.shown.startswith("inconclusive (smallest margin supportable: ") and "cannot tell" in a.details[0]


def test_no_effect_margin_is_overridable(frames):
    specs = []
    for v in (1e-6, 0.0):
        specs += [{"recipe": "tort", "dataset": "digits", "seed": s, "sweep": "ab", "overrides": {"optim.min_lr": v},
                   "axes": {"optim.min_lr": v}, "noise": 0.3, "tau": 0.5} for s in range(6)]
    (ab,) = find_ablations(Store.from_frames(*frames(specs)))
    wide = claims.assess(ab, claims.margins({"optim.min_lr": 5.0}))[0]
    narrow = claims.assess(ab, claims.margins({"optim.min_lr": 0.01}))[0]
    assert wide.shown == "equivalent within ±5" and narrow.verdict == claims.INCONCLUSIVE
    with pytest.raises(AnalysisError, match="not a 'no effect' claim"):
        claims.margins({"epochs": 1.0})
    with pytest.raises(AnalysisError, match="positive"):
        claims.parse_margins(["-1"])
    assert set(claims.parse_margins(["0.5"]).values()) == {0.5}


def test_no_effect_claim_with_one_seed_names_what_is_missing(frames):
    a = _assess(frames, "loss.label_smoothing", [0.0, 0.1], seeds=(0,))
    assert a.verdict == claims.INSUFFICIENT and "≥ 2 per arm" in a.data_says


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
    assert none.verdict in (claims.INCONCLUSIVE, claims.DIRECTION, claims.NOT_SUPPORTED)
    assert "p = " in none.data_says


def test_teacher_temp_faster_convergence(frames):
    a = _assess(frames, "loss.teacher_temp", [0.02, 0.04, 0.08], seeds=(0, 1, 2, 3, 4),
                distill=lambda v: (5.0, 1.0 if v < 0.04 else 4.0))
    assert a.verdict == claims.CONSISTENT
    assert "Values above the default: 0 of 1" in " ".join(a.details)


def test_faster_claim_with_three_seeds_names_the_floor(frames):
    a = _assess(frames, "loss.student_temp", [0.1, 0.3], distill=lambda v: (5.0, 1.0 if v > 0.1 else 4.0))
    assert a.verdict == claims.DIRECTION  # faster in every seed, p = 0.1: the floor of 3 vs 3
    assert "cannot reach p < 0.05" in " ".join(a.details)


def test_direction_only_needs_more_than_a_sign(frames):
    # two seeds a side: Mann–Whitney cannot go below p = 1/3, so a faster mean is only a sign
    a = _assess(frames, "loss.student_temp", [0.1, 0.3], seeds=(0, 1),
                distill=lambda v: (5.0, 1.0 if v > 0.1 else 4.0))
    assert a.verdict == claims.INCONCLUSIVE


def test_a_loss_that_never_decreased_is_named_as_the_reason(frames):
    a = _assess(frames, "loss.teacher_temp", [0.02, 0.04], distill=lambda v: (-3.0, 3.0))  # rises over epochs
    assert a.verdict == claims.INSUFFICIENT
    assert "never fell below its first epoch's value" in a.data_says
    assert "no distillation-loss curves" not in a.data_says


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


def test_one_seed_per_value_is_insufficient_not_a_lean(frames):
    a = _assess(frames, "loss.teacher_temp", [0.02, 0.04], seeds=(0,),
                distill=lambda v: (5.0, 1.0 if v < 0.04 else 4.0))
    assert a.verdict == claims.INSUFFICIENT and "1 seed per value" in a.data_says


def test_loss_subsets_count_unfinished_trials_apart_from_completed_and_failed(frames):
    # seed 2 of distill-only is still running and seed 3 of rotation-only failed: neither is
    # "completed", and the running one is not a failure either
    specs = []
    for v in (["distill"], ["rotation"], ["distill", "supervised", "rotation"]):
        specs += [{"recipe": "tort", "dataset": "digits", "seed": s, "sweep": "ab", "overrides": {"loss.enabled": v},
                   "axes": {"loss.enabled": v}} for s in (0, 1)]
    specs += [{"recipe": "tort", "dataset": "digits", "seed": 2, "sweep": "ab", "upto": 3,
               "overrides": {"loss.enabled": ["distill"]}, "axes": {"loss.enabled": ["distill"]}},
              {"recipe": "tort", "dataset": "digits", "seed": 3, "sweep": "ab", "status": "failed", "upto": 1,
               "overrides": {"loss.enabled": ["rotation"]}, "axes": {"loss.enabled": ["rotation"]}}]
    (ab,) = find_ablations(Store.from_frames(*frames(specs)))
    (a,) = claims.assess(ab)
    assert "distill only: 2/2 finished trials completed (1 not finished, left out)" in a.data_says
    assert "rotation only: 1/3 finished trials failed," in a.data_says

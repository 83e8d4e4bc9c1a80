"""The thesis's ablation claims (thesis-recipe.md, thesis §4.6) set beside what the data says.

Each claim is tied to the config key its ablation sweeps. `assess(ablation)` returns the claim,
a plain-words summary of the data, and a verdict.

"No effect" claims (label smoothing, rotation probability, weight decay, minimum lr) are tested
as equivalence against a stated margin (`Claim.margin`, in the metric's units; overridable per
claim): two one-sided Welch tests per variant (TOST), and

    equivalent within ±m   every variant's difference from the default is shown to lie within ±m
    different              some variant differs (Holm-adjusted Welch test) beyond what ±m allows
    inconclusive           neither: the data are compatible with no effect and with an effect;
                           the verdict names the smallest margin the data could support

Other claims get:

    consistent        a significant test in the claimed direction
    direction only    the claimed direction with p < 0.2 (a one-sided p < 0.1), short of significance
    inconclusive      the claimed direction at p ≥ 0.2: a sign, no evidence
    not supported     the data lean the other way (not significantly)
    contradicted      a significant result against the claim
    insufficient data too few completed seeds/values for the claim's test (with the reason)
    no claim          the thesis says nothing about this key

A verdict reached on a profile other than the thesis's is reported as "not comparable (profile X)"
beside what the data there say: a tiny model on digits does not test a ViT-B claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as st

from tort_core.catalog import metric_label

from .ablations import Ablation, numeric_value, value_label
from .compare import fmt_num, fmt_p
from .errors import AnalysisError
from .stats import (ALPHA, DIFFERENT, EQUIVALENT, INCONCLUSIVE, equivalence_family, holm, mean_ci, mw_min_p,
                    welch_diff_ci, welch_t)

CONSISTENT, DIRECTION, NOT_SUPPORTED, CONTRADICTED, INSUFFICIENT, NO_CLAIM = (
    "consistent", "direction only", "not supported", "contradicted", "insufficient data", "no claim")
DIRECTION_P = 0.2  # two-sided p below which a lean in the claimed direction counts as "direction only"
THESIS_PROFILE = "thesis"
# ±1 top-1 point: below the +1.2 points the thesis reports for doubling the epochs, the smallest
# difference it treats as a real effect.
DEFAULT_MARGIN = 1.0


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    kind: str
    metric: str = "final_test_top1"
    params: dict = field(default_factory=dict)
    margin: float | None = None  # "no effect" claims: the equivalence margin, in the metric's units


CLAIMS: dict[str, Claim] = {c.key: c for c in (
    Claim("loss.label_smoothing", "label smoothing (0, 0.1) has no significant effect", "no_effect",
          margin=DEFAULT_MARGIN),
    Claim("views.rot_prob", "rotation probability (0.5, 1.0) has no significant effect", "no_effect",
          margin=DEFAULT_MARGIN),
    Claim("optim.weight_decay", "weight decay (0–0.4) has no significant effect", "no_effect", margin=DEFAULT_MARGIN),
    Claim("optim.min_lr", "minimum lr (1e-6, 1e-8, 0) has no significant effect", "no_effect", margin=DEFAULT_MARGIN),
    Claim("epochs", "200 epochs give +1.2 points over 100; 300 another +1.3", "epochs",
          params={"steps": {(100, 200): 1.2, (200, 300): 1.3}}),
    Claim("views.mask_scale", "a larger mask scale goes with a higher distillation loss", "correlation",
          metric="final_loss_distill", params={"sign": 1}),
    Claim("loss.student_temp", "a student temperature above 0.1 makes the distillation loss converge faster",
          "faster_loss", metric="distill_settling_epoch", params={"side": "above"}),
    Claim("loss.teacher_temp", "a teacher temperature below 0.04 makes the distillation loss converge faster; "
          "higher values show no significant difference", "faster_loss", metric="distill_settling_epoch",
          params={"side": "below"}),
    Claim("loss.enabled", "rotation alone is unstable; distillation and supervised each work alone; "
          "distillation+rotation is slightly better; all three together are best", "loss_subsets",
          metric="final_knn_top1"),
)}
NO_EFFECT_KEYS = tuple(k for k, c in CLAIMS.items() if c.kind == "no_effect")


def margins(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Equivalence margin per "no effect" claim: the defaults, replaced by `overrides` (key →
    margin, or '*' for all of them). An unknown key or a margin ≤ 0 is an AnalysisError."""
    out = {k: float(CLAIMS[k].margin) for k in NO_EFFECT_KEYS}
    for key, value in (overrides or {}).items():
        try:
            m = float(value)
        except (TypeError, ValueError):
            raise AnalysisError(f"margin for {key}: '{value}' is not a number") from None
        if not (math.isfinite(m) and m > 0):
            raise AnalysisError(f"margin for {key}: {value} must be a positive number (top-1 points)")
        if key == "*":
            out = dict.fromkeys(out, m)
        elif key in out:
            out[key] = m
        else:
            raise AnalysisError(f"margin for '{key}': not a 'no effect' claim; those are {', '.join(NO_EFFECT_KEYS)}")
    return out


def parse_margins(items: list[str] | None) -> dict[str, float]:
    """CLI form: ['0.5'] (every claim) or ['loss.label_smoothing=0.5', ...]."""
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "*", item
        out[key.strip()] = value.strip()  # type: ignore[assignment]
    return margins(out)


@dataclass
class Assessment:
    key: str
    claim: str
    data_says: str
    verdict: str                 # what the data say (the category: consistent, equivalent, …)
    metric: str = ""
    details: list[str] = field(default_factory=list)
    verdict_text: str = ""       # the verdict as shown ("equivalent within ±1", "inconclusive (…)")
    comparability: str = ""      # "" or "not comparable (profile demo)"

    @property
    def shown(self) -> str:
        return self.verdict_text or self.verdict

    def as_row(self) -> dict[str, str]:
        return {"key": self.key, "thesis claim": self.claim, "metric": metric_label(self.metric) if self.metric else "",
                "what the data say": self.data_says + ("" if not self.details else " " + " ".join(self.details)),
                "verdict": self.comparability or self.shown,
                "verdict on this data": self.shown}


def assess(ab: Ablation, margin_by_key: Mapping[str, float] | None = None) -> list[Assessment]:
    """One assessment per dataset in the sweep (claims are about each dataset the thesis used)."""
    claim = CLAIMS.get(ab.keys[0]) if len(ab.keys) == 1 else None
    if claim is None:
        return [Assessment(ab.key, "(the thesis makes no claim about this key)", "see the table", NO_CLAIM)]
    out = []
    datasets = ab.datasets or ["(none)"]
    profiles = sorted({str(p) for p in ab.trials["profile"].dropna()}) if "profile" in ab.trials else []
    other = [p for p in profiles if p != THESIS_PROFILE]
    for ds in datasets:
        tab = ab.table[ab.table["dataset"] == ds] if not ab.table.empty else ab.table
        trials = ab.trials[ab.trials["dataset"] == ds] if "dataset" in ab.trials else ab.trials
        if claim.kind == "no_effect":
            m = (margin_by_key or {}).get(claim.key, claim.margin)
            a = _no_effect(claim, ab, tab, trials, float(m))
        else:
            fn = {"epochs": _epochs, "correlation": _correlation, "faster_loss": _faster_loss,
                  "loss_subsets": _loss_subsets}[claim.kind]
            a = fn(claim, ab, tab, trials)
        if len(datasets) > 1:
            a.data_says = f"[{ds}] {a.data_says}"
        if other:
            a.comparability = f"not comparable (profile {', '.join(other)})"
        out.append(a)
    return out


def _rows(tab: pd.DataFrame, metric: str) -> pd.DataFrame:
    return tab[tab["metric"] == metric] if not tab.empty else tab


def _values(trials: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    done = trials[trials["status"] == "completed"]
    if done.empty or metric not in done:
        return {}
    return {v: g[metric].to_numpy(dtype=float) for v, g in done.groupby("value")}


def _no_effect(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame, margin: float) -> Assessment:
    r = _rows(tab, c.metric)
    by = _values(trials, c.metric)
    variants = [v for v in ab.values if v != ab.default and v in by]
    ref = by.get(ab.default, np.array([]))
    ref = ref[np.isfinite(ref)]
    if len(ref) < 2 or not variants or all(np.isfinite(by[v]).sum() < 2 for v in variants):
        why = ("the reference " + str(ab.default) + f" has {len(ref)} completed seed(s)" if len(ref) < 2
               else "no variant has 2 completed seeds")
        return Assessment(c.key, c.text, f"{why}; an equivalence test needs ≥ 2 per arm. " + (_means(r) or ""),
                          INSUFFICIENT, c.metric)
    fam = equivalence_family(ref, [by[v] for v in variants], margin)
    parts = [f"{c.key} = {v}: Δ {e.diff.fmt()} (TOST p = {fmt_p(e.tost_p)}, Holm Welch p = {fmt_p(e.welch_p)})"
             for v, e in zip(variants, fam.members)]
    says = (f"each value against the default {ab.default} (margin ±{margin:g} points, {_seed_range(r)} seeds per "
            f"variant): " + "; ".join(parts) + ".")
    details = []
    if fam.verdict == INCONCLUSIVE and math.isfinite(fam.smallest_margin):
        details.append(f"The data cannot tell ±{margin:g} apart from no effect; they would support equivalence only "
                       f"within ±{fam.smallest_margin:.2f}.")
    elif fam.verdict == EQUIVALENT:
        sig = [v for v, e in zip(variants, fam.members) if math.isfinite(e.welch_p) and e.welch_p < ALPHA]
        if sig:
            details.append(f"{', '.join(sig)} differ{'s' if len(sig) == 1 else ''} significantly, but by less than "
                           f"the margin.")
    return Assessment(c.key, c.text, says, fam.verdict, c.metric, details, verdict_text=fam.text())


def _seed_range(r: pd.DataFrame) -> str:
    if r.empty:
        return "0"
    n = r["n"].astype(int)
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def _means(r: pd.DataFrame) -> str:
    if r.empty:
        return ""
    return "; ".join(f"{x['value']}: {fmt_num(x['mean'])} (n={int(x['n'])})" for x in r.to_dict("records"))


def _lean(agrees: bool, p: float) -> str:
    """Verdict for a test in the claimed (agrees) or opposite direction with two-sided p."""
    if not math.isfinite(p):
        return INSUFFICIENT
    if p < ALPHA:
        return CONSISTENT if agrees else CONTRADICTED
    if not agrees:
        return NOT_SUPPORTED
    return DIRECTION if p < DIRECTION_P else INCONCLUSIVE


def _epochs(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    done = trials[trials["status"] == "completed"]
    vals = sorted({numeric_value(v) for v in done["value"]} - {math.nan}) if not done.empty else []
    vals = [v for v in vals if math.isfinite(v)]
    if len(vals) < 2 or c.metric not in done:
        return Assessment(c.key, c.text, "fewer than two epoch counts completed", INSUFFICIENT, c.metric)
    by = {v: done.loc[done["value"].map(numeric_value) == v, c.metric].to_numpy(dtype=float) for v in vals}
    claimed = c.params["steps"]
    parts, inside, testable = [], [], 0
    for lo, hi in zip(vals, vals[1:]):
        d = welch_diff_ci(by[lo], by[hi])
        txt = f"{value_label(lo)}→{value_label(hi)}: {d.fmt()}"
        want = claimed.get((int(lo), int(hi)))
        if want is not None:
            txt += f" (thesis: +{want})"
            if d.has_interval:
                testable += 1
                inside.append(d.lo <= want <= d.hi)
        parts.append(txt)
    says = "differences in points (95% Welch intervals): " + "; ".join(parts) + "."
    if testable == 0:
        positive = all(p_ > 0 for p_ in (np.nanmean(by[b]) - np.nanmean(by[a]) for a, b in zip(vals, vals[1:])))
        extra = (" The thesis's epoch counts (100/200/300) are not in this sweep or lack seeds; "
                 f"more epochs {'helped' if positive else 'did not always help'} here.")
        return Assessment(c.key, c.text, says + extra, INSUFFICIENT, c.metric)
    verdict = CONSISTENT if all(inside) else NOT_SUPPORTED
    return Assessment(c.key, c.text, says, verdict, c.metric)


def _correlation(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    done = trials[trials["status"] == "completed"]
    if c.metric not in done or done.empty:
        return Assessment(c.key, c.text, f"no {metric_label(c.metric)} recorded", INSUFFICIENT, c.metric)
    x = done["value"].map(numeric_value).to_numpy(dtype=float)
    y = done[c.metric].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 3 or len(x) < 4:
        return Assessment(c.key, c.text, f"{len(np.unique(x))} values, {len(x)} trials: too few for a rank "
                          f"correlation (needs ≥ 3 values and ≥ 4 trials)", INSUFFICIENT, c.metric)
    rho, p = st.spearmanr(x, y)
    says = f"Spearman ρ between the mask-scale midpoint and the final distillation loss = {fmt_num(rho)} " \
           f"(p = {fmt_p(p)}, {len(x)} trials)."
    if not math.isfinite(rho):
        return Assessment(c.key, c.text, says + " Undefined: one of the two does not vary.", INSUFFICIENT, c.metric)
    return Assessment(c.key, c.text, says, _lean(bool(np.sign(rho) == c.params.get("sign", 1)), float(p)), c.metric)


def _settling_reason(trials: pd.DataFrame, default: str | None) -> str:
    """Why there is no settling epoch: the real reason, from what the curves hold."""
    done = trials[trials["status"] == "completed"]
    if done.empty:
        return "no completed trials"
    if "distill_epochs" not in done or done["distill_epochs"].fillna(0).max() == 0:
        return "no distillation loss was recorded for these trials (the recipe has none enabled, or no epoch finished)"
    if done["distill_epochs"].max() < 2:
        return "the distillation loss was recorded for one epoch only: a settling epoch needs at least two"
    drop = done["distill_drop"].dropna()
    return (f"the distillation loss was recorded ({int(done['distill_epochs'].median())} epochs per trial) but never "
            f"fell below its first epoch's value in any completed trial (mean drop {fmt_num(drop.mean(), 3)}): "
            f"it did not converge, so there is no settling epoch to compare")


def _faster_loss(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    """Settling epochs are small integers, often equal across seeds (zero variance, so no t test):
    the rank-based Mann–Whitney test is the one used here, with its floor stated."""
    r = _rows(tab, c.metric)
    if r.empty or r["n"].sum() == 0:
        return Assessment(c.key, c.text, _settling_reason(trials, ab.default) + ".", INSUFFICIENT, c.metric)
    ref = numeric_value(ab.default) if ab.default else math.nan
    tests = r[~r["is_default"]].copy()
    tests["x"] = tests["value"].map(numeric_value)
    side = c.params["side"]
    claimed = tests[(tests["x"] > ref) if side == "above" else (tests["x"] < ref)]
    others = tests.drop(claimed.index)
    ref_n = int(r.loc[r["is_default"], "n"].sum())
    if ref_n == 0:
        ref_trials = trials[trials["value"] == ab.default]
        return Assessment(c.key, c.text, f"the reference {ab.default} has no settling epoch: "
                          f"{_settling_reason(ref_trials, ab.default)} ({_means(r)}).", INSUFFICIENT, c.metric)
    if claimed.empty or (claimed["n"] == 0).all():
        return Assessment(c.key, c.text, f"no completed variants {side} the default {ab.default} to compare: "
                          + (_means(r) or "nothing recorded"), INSUFFICIENT, c.metric)
    parts = [f"{x['value']}: {fmt_num(x['mean'], 1)} ({'+' if x['diff'] > 0 else ''}{fmt_num(x['diff'], 1)}, "
             f"Mann–Whitney Holm p = {fmt_p(x['mw_p_holm'])})" for x in claimed.to_dict("records")]
    says = (f"epoch at which the distillation loss made 90% of its drop, default {ab.default}: "
            f"{fmt_num(r.loc[r['is_default'], 'mean'].mean(), 1)}; " + "; ".join(parts) + ".")
    n_min = int(min(claimed["n"].min(), ref_n))
    if n_min < 2:
        return Assessment(c.key, c.text, says + f" With {n_min} seed per value there is no test to run (a rank test "
                          f"of 1 against 1 seed can only return p = 1).", INSUFFICIENT, c.metric)
    floor = mw_min_p(n_min, ref_n)
    details = []
    if floor >= ALPHA:
        details.append(f"With {n_min} seeds per value the test cannot reach p < {ALPHA:g} (smallest attainable "
                       f"p = {fmt_p(floor)}): more seeds are needed for significance.")
    if side == "below" and not others.empty:
        sig_other = others[others["mw_p_holm"] < ALPHA]
        details.append(f"Values above the default: {len(sig_other)} of {len(others)} differ significantly "
                       f"(thesis: none).")
    if ((claimed["diff"] > 0) & (claimed["mw_p_holm"] < ALPHA)).any():
        return Assessment(c.key, c.text, says, CONTRADICTED, c.metric, details)
    if ((claimed["diff"] < 0) & (claimed["mw_p_holm"] < ALPHA)).all():
        return Assessment(c.key, c.text, says, CONSISTENT, c.metric, details)
    faster = bool((claimed["diff"] < 0).all())
    worst_p = float(claimed["mw_p_holm"].max())
    return Assessment(c.key, c.text, says, _lean(faster, worst_p) if math.isfinite(worst_p) else INSUFFICIENT,
                      c.metric, details)


def _subset(label: str) -> frozenset[str]:
    inner = label.strip("[]")
    return frozenset(x.strip() for x in inner.split(",") if x.strip())


def _unfinished(n: int) -> str:
    return f" ({n} not finished, left out)" if n else ""


def _loss_subsets(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    """Four sub-claims, each checked on its own; the verdict is the weakest of them."""
    metric = c.metric
    done = trials[trials["status"] == "completed"]
    by: dict[frozenset, np.ndarray] = {}
    for v, g in done.groupby("value"):
        if metric in g:
            by[_subset(v)] = g[metric].to_numpy(dtype=float)
    # per subset: (failed, completed, not finished); a trial still running or stopped is neither
    counts = trials.groupby("value")["status"].agg(
        lambda s: (int((s == "failed").sum()), int((s == "completed").sum()),
                   int((~s.isin(["failed", "completed"])).sum())))
    fail_by = {_subset(v): n for v, n in counts.items()}
    rot, dist, sup = frozenset({"rotation"}), frozenset({"distill"}), frozenset({"supervised"})
    dr, allthree = frozenset({"distill", "rotation"}), frozenset({"distill", "supervised", "rotation"})
    parts, verdicts = [], []

    # (1) rotation alone unstable: failures, or the widest spread across seeds
    if rot in fail_by:
        f, ok, open_ = fail_by[rot]
        sds = {k: float(np.std(v, ddof=1)) for k, v in by.items() if len(v) > 1}
        widest = bool(sds) and rot in sds and sds[rot] == max(sds.values())
        parts.append(f"rotation only: {f}/{f + ok} finished trials failed{_unfinished(open_)}, "
                     f"seed SD {fmt_num(sds.get(rot, math.nan))}{' (the widest)' if widest else ''}.")
        verdicts.append(CONSISTENT if f > 0 or widest else (NOT_SUPPORTED if len(sds) > 1 else INSUFFICIENT))
    # (2) distillation alone and supervised alone complete
    for s, name in ((dist, "distill"), (sup, "supervised")):
        if s in fail_by:
            f, ok, open_ = fail_by[s]
            m = mean_ci(by.get(s, []))
            parts.append(f"{name} only: {ok}/{f + ok} finished trials completed{_unfinished(open_)}, "
                         f"{metric_label(metric)} {m.fmt()}.")
            verdicts.append(CONSISTENT if f == 0 and m.n > 0 else NOT_SUPPORTED)
    # (3) distill+rotation slightly better than distill alone
    if dr in by and dist in by:
        d = welch_diff_ci(by[dist], by[dr])
        t = welch_t(by[dist], by[dr])
        parts.append(f"distill+rotation − distill: {d.fmt()} (Welch p = {fmt_p(t.p)}).")
        verdicts.append(_lean(d.value > 0, t.p))
    # (4) all three best: highest mean, and not significantly beaten by any subset (Holm)
    if allthree in by and len(by) > 1:
        means = {k: float(np.nanmean(v)) for k, v in by.items() if len(v)}
        best = max(means, key=means.get)
        others = [k for k in by if k != allthree]
        ps = [welch_t(by[k], by[allthree]).p for k in others]
        adj, _ = holm(ps)
        beaten = [k for k, p in zip(others, adj) if math.isfinite(p) and p < ALPHA and means[k] > means[allthree]]
        beats = [k for k, p in zip(others, adj) if math.isfinite(p) and p < ALPHA and means[k] < means[allthree]]
        parts.append(f"all three: {metric_label(metric)} {fmt_num(means[allthree])}, "
                     f"{'the highest mean' if best == allthree else 'below ' + '+'.join(sorted(best))}; "
                     f"significantly above {len(beats)} of {len(others)} other subsets (Holm).")
        if beaten:
            verdicts.append(CONTRADICTED)
        elif best != allthree:
            verdicts.append(NOT_SUPPORTED)
        elif len(beats) == len(others):
            verdicts.append(CONSISTENT)
        else:
            worst = max((p for p in adj if math.isfinite(p)), default=math.nan)
            verdicts.append(_lean(True, worst))
    if not parts:
        return Assessment(c.key, c.text, "none of the subsets the claim is about were run", INSUFFICIENT, metric)
    order = [CONTRADICTED, NOT_SUPPORTED, INSUFFICIENT, INCONCLUSIVE, DIRECTION, CONSISTENT]
    verdict = min(verdicts, key=order.index) if verdicts else INSUFFICIENT
    note = ("(k-NN accuracy, because top-1 of a classifier head trained without the supervised loss "
            "is not meaningful.)")
    return Assessment(c.key, c.text, " ".join(parts), verdict, metric, [note])


__all__ = ["CLAIMS", "assess", "margins", "parse_margins", "Assessment", "Claim", "CONSISTENT", "DIRECTION",
           "NOT_SUPPORTED", "CONTRADICTED", "INSUFFICIENT", "NO_CLAIM", "EQUIVALENT", "DIFFERENT", "INCONCLUSIVE"]

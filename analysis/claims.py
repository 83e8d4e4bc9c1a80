"""The thesis's ablation claims (thesis-recipe.md, thesis §4.6) set beside what the data says.

Each claim is tied to the config key its ablation sweeps. `assess(ablation)` returns the claim,
a plain-words summary of the data, and a verdict:

    consistent        the data agree, with the test that the claim implies
    direction only    the data lean the claimed way but no test is significant after Holm
    not supported     the data do not show what is claimed (and do not show the opposite)
    contradicted      a significant result against the claim
    insufficient data too few completed seeds/values for the claim's test
    no claim          the thesis says nothing about this key

"No significant effect" can only ever be *consistent with* the data, never proven: the summary
gives the widest difference the confidence intervals still allow, so a reader can see how weak
an absence of significance with few seeds is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as st

from .ablations import Ablation, numeric_value, value_label
from .compare import fmt_num, fmt_p
from .stats import ALPHA, bootstrap_diff_ci, holm, mean_ci, mw_min_p, welch_t

CONSISTENT, DIRECTION, NOT_SUPPORTED, CONTRADICTED, INSUFFICIENT, NO_CLAIM = (
    "consistent", "direction only", "not supported", "contradicted", "insufficient data", "no claim")


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    kind: str
    metric: str = "final_test_top1"
    params: dict = field(default_factory=dict)


CLAIMS: dict[str, Claim] = {c.key: c for c in (
    Claim("loss.label_smoothing", "label smoothing (0, 0.1) has no significant effect", "no_effect"),
    Claim("views.rot_prob", "rotation probability (0.5, 1.0) has no significant effect", "no_effect"),
    Claim("optim.weight_decay", "weight decay (0–0.4) has no significant effect", "no_effect"),
    Claim("optim.min_lr", "minimum lr (1e-6, 1e-8, 0) has no significant effect", "no_effect"),
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


@dataclass
class Assessment:
    key: str
    claim: str
    data_says: str
    verdict: str
    metric: str = ""
    details: list[str] = field(default_factory=list)

    def as_row(self) -> dict[str, str]:
        return {"key": self.key, "thesis claim": self.claim, "metric": self.metric, "what the data say":
                self.data_says + ("" if not self.details else " " + " ".join(self.details)), "verdict": self.verdict}


def assess(ab: Ablation) -> list[Assessment]:
    """One assessment per dataset in the sweep (claims are about each dataset the thesis used)."""
    claim = CLAIMS.get(ab.keys[0]) if len(ab.keys) == 1 else None
    if claim is None:
        return [Assessment(ab.key, "(the thesis makes no claim about this key)", "see the table", NO_CLAIM)]
    out = []
    datasets = ab.datasets or ["(none)"]
    for ds in datasets:
        tab = ab.table[ab.table["dataset"] == ds] if not ab.table.empty else ab.table
        trials = ab.trials[ab.trials["dataset"] == ds] if "dataset" in ab.trials else ab.trials
        fn = {"no_effect": _no_effect, "epochs": _epochs, "correlation": _correlation,
              "faster_loss": _faster_loss, "loss_subsets": _loss_subsets}[claim.kind]
        a = fn(claim, ab, tab, trials)
        if len(datasets) > 1:
            a.data_says = f"[{ds}] {a.data_says}"
        out.append(a)
    return out


def _rows(tab: pd.DataFrame, metric: str) -> pd.DataFrame:
    return tab[tab["metric"] == metric] if not tab.empty else tab


def _no_effect(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    r = _rows(tab, c.metric)
    tests = r[~r["is_default"]] if not r.empty else r
    if tests.empty or tests["welch_p_holm"].isna().all():
        return Assessment(c.key, c.text, _means(r) or "no completed variants to compare", INSUFFICIENT, c.metric)
    worst = tests.loc[tests["welch_p_holm"].idxmin()]
    bound = np.nanmax(np.abs(tests[["diff_lo", "diff_hi"]].to_numpy(dtype=float)))
    sig = tests[tests["welch_p_holm"] < ALPHA]
    if len(sig):
        s = sig.iloc[0]
        says = (f"{c.key} = {s['value']} differs from the default {ab.default} by {fmt_num(s['diff'])} points "
                f"[{fmt_num(s['diff_lo'])}, {fmt_num(s['diff_hi'])}], Holm p = {fmt_p(s['welch_p_holm'])}.")
        return Assessment(c.key, c.text, says, CONTRADICTED, c.metric)
    says = (f"no variant differs significantly from the default {ab.default} (smallest Holm p = "
            f"{fmt_p(worst['welch_p_holm'])}); differences up to ±{fmt_num(bound)} points remain compatible "
            f"with the data ({_seed_range(r)} seeds per variant).")
    return Assessment(c.key, c.text, says, CONSISTENT, c.metric)


def _seed_range(r: pd.DataFrame) -> str:
    n = r["n"].astype(int)
    return f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"


def _means(r: pd.DataFrame) -> str:
    if r.empty:
        return ""
    return "; ".join(f"{x['value']}: {fmt_num(x['mean'])} (n={int(x['n'])})" for x in r.to_dict("records"))


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
        d = bootstrap_diff_ci(by[lo], by[hi])
        txt = f"{value_label(lo)}→{value_label(hi)}: {fmt_num(d.value)} [{fmt_num(d.lo)}, {fmt_num(d.hi)}]"
        want = claimed.get((int(lo), int(hi)))
        if want is not None:
            txt += f" (thesis: +{want})"
            if math.isfinite(d.lo):
                testable += 1
                inside.append(d.lo <= want <= d.hi)
        parts.append(txt)
    says = "differences in points: " + "; ".join(parts) + "."
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
        return Assessment(c.key, c.text, f"no {c.metric} recorded", INSUFFICIENT, c.metric)
    x = done["value"].map(numeric_value).to_numpy(dtype=float)
    y = done[c.metric].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 3 or len(x) < 4:
        return Assessment(c.key, c.text, f"{len(np.unique(x))} values, {len(x)} trials: too few for a rank "
                          f"correlation", INSUFFICIENT, c.metric)
    rho, p = st.spearmanr(x, y)
    says = f"Spearman ρ between the mask-scale midpoint and the final distillation loss = {fmt_num(rho)} " \
           f"(p = {fmt_p(p)}, {len(x)} trials)."
    if not math.isfinite(rho):
        return Assessment(c.key, c.text, says, INSUFFICIENT, c.metric)
    agrees = np.sign(rho) == c.params.get("sign", 1)
    if p < ALPHA:
        return Assessment(c.key, c.text, says, CONSISTENT if agrees else CONTRADICTED, c.metric)
    return Assessment(c.key, c.text, says, DIRECTION if agrees else NOT_SUPPORTED, c.metric)


def _faster_loss(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    """Settling epochs are small integers, often equal across seeds (zero variance, so no t test):
    the rank-based Mann–Whitney test is the one used here, with its floor stated."""
    r = _rows(tab, c.metric)
    if r.empty:
        return Assessment(c.key, c.text, "no distillation-loss curves recorded", INSUFFICIENT, c.metric)
    ref = numeric_value(ab.default) if ab.default else math.nan
    tests = r[~r["is_default"]].copy()
    tests["x"] = tests["value"].map(numeric_value)
    side = c.params["side"]
    claimed = tests[(tests["x"] > ref) if side == "above" else (tests["x"] < ref)]
    others = tests.drop(claimed.index)
    ref_n = int(r.loc[r["is_default"], "n"].sum())
    if ref_n == 0:
        return Assessment(c.key, c.text, f"the reference {ab.default} has no settling epoch: its distillation loss "
                          f"did not decrease in any completed trial, so there is nothing to be faster than "
                          f"({_means(r)}).", INSUFFICIENT, c.metric)
    if claimed.empty or (claimed["n"] == 0).all():
        return Assessment(c.key, c.text, f"no completed variants {side} the default {ab.default} to compare: "
                          + (_means(r) or "nothing recorded"), INSUFFICIENT, c.metric)
    parts = [f"{x['value']}: {fmt_num(x['mean'], 1)} ({'+' if x['diff'] > 0 else ''}{fmt_num(x['diff'], 1)}, "
             f"Mann–Whitney Holm p = {fmt_p(x['mw_p_holm'])})" for x in claimed.to_dict("records")]
    says = (f"epoch at which the distillation loss made 90% of its drop, default {ab.default}: "
            f"{fmt_num(r.loc[r['is_default'], 'mean'].mean(), 1)}; " + "; ".join(parts) + ".")
    n_min = int(min(claimed["n"].min(), ref_n))
    floor = mw_min_p(n_min, ref_n)
    details = []
    if floor >= ALPHA:
        details.append(f"With {n_min} seeds per value the test cannot reach p < {ALPHA:g} (smallest attainable "
                       f"p = {fmt_p(floor)}): more seeds are needed for significance.")
    if side == "below" and not others.empty:
        sig_other = others[others["mw_p_holm"] < ALPHA]
        details.append(f"Values above the default: {len(sig_other)} of {len(others)} differ significantly "
                       f"(thesis: none).")
    faster = bool((claimed["diff"] < 0).all())
    sig_fast = bool(((claimed["diff"] < 0) & (claimed["mw_p_holm"] < ALPHA)).all())
    slower_sig = bool(((claimed["diff"] > 0) & (claimed["mw_p_holm"] < ALPHA)).any())
    if slower_sig:
        return Assessment(c.key, c.text, says, CONTRADICTED, c.metric, details)
    if sig_fast:
        return Assessment(c.key, c.text, says, CONSISTENT, c.metric, details)
    return Assessment(c.key, c.text, says, DIRECTION if faster else NOT_SUPPORTED, c.metric, details)


def _subset(label: str) -> frozenset[str]:
    inner = label.strip("[]")
    return frozenset(x.strip() for x in inner.split(",") if x.strip())


def _loss_subsets(c: Claim, ab: Ablation, tab: pd.DataFrame, trials: pd.DataFrame) -> Assessment:
    """Four sub-claims, each checked on its own; the verdict is the weakest of them."""
    metric = c.metric
    done = trials[trials["status"] == "completed"]
    by: dict[frozenset, np.ndarray] = {}
    for v, g in done.groupby("value"):
        if metric in g:
            by[_subset(v)] = g[metric].to_numpy(dtype=float)
    failed = trials.groupby("value")["status"].apply(lambda s: int((s == "failed").sum())).to_dict()
    total = trials.groupby("value").size().to_dict()
    fail_by = {_subset(v): (failed.get(v, 0), total.get(v, 0)) for v in total}
    rot, dist, sup = frozenset({"rotation"}), frozenset({"distill"}), frozenset({"supervised"})
    dr, allthree = frozenset({"distill", "rotation"}), frozenset({"distill", "supervised", "rotation"})
    parts, verdicts = [], []

    # (1) rotation alone unstable: failures, or the widest spread across seeds
    if rot in fail_by:
        f, n = fail_by[rot]
        sds = {k: float(np.std(v, ddof=1)) for k, v in by.items() if len(v) > 1}
        widest = bool(sds) and rot in sds and sds[rot] == max(sds.values())
        parts.append(f"rotation only: {f}/{n} trials failed, seed SD {fmt_num(sds.get(rot, math.nan))}"
                     f"{' (the widest)' if widest else ''}.")
        verdicts.append(CONSISTENT if f > 0 or widest else (NOT_SUPPORTED if len(sds) > 1 else INSUFFICIENT))
    # (2) distillation alone and supervised alone complete
    for s, name in ((dist, "distill"), (sup, "supervised")):
        if s in fail_by:
            f, n = fail_by[s]
            m = mean_ci(by.get(s, []))
            parts.append(f"{name} only: {n - f}/{n} completed, {metric} {m.fmt()}.")
            verdicts.append(CONSISTENT if f == 0 and m.n > 0 else NOT_SUPPORTED)
    # (3) distill+rotation slightly better than distill alone
    if dr in by and dist in by:
        d = bootstrap_diff_ci(by[dist], by[dr])
        t = welch_t(by[dist], by[dr])
        parts.append(f"distill+rotation − distill: {fmt_num(d.value)} [{fmt_num(d.lo)}, {fmt_num(d.hi)}] "
                     f"(Welch p = {fmt_p(t.p)}).")
        if not math.isfinite(t.p):
            verdicts.append(INSUFFICIENT)
        elif d.value > 0:
            verdicts.append(CONSISTENT if t.p < ALPHA else DIRECTION)
        else:
            verdicts.append(CONTRADICTED if t.p < ALPHA else NOT_SUPPORTED)
    # (4) all three best: highest mean, and not significantly beaten by any subset (Holm)
    if allthree in by and len(by) > 1:
        means = {k: float(np.nanmean(v)) for k, v in by.items() if len(v)}
        best = max(means, key=means.get)
        others = [k for k in by if k != allthree]
        ps = [welch_t(by[k], by[allthree]).p for k in others]
        adj, _ = holm(ps)
        beaten = [k for k, p in zip(others, adj) if math.isfinite(p) and p < ALPHA and means[k] > means[allthree]]
        beats = [k for k, p in zip(others, adj) if math.isfinite(p) and p < ALPHA and means[k] < means[allthree]]
        parts.append(f"all three: {metric} {fmt_num(means[allthree])}, "
                     f"{'the highest mean' if best == allthree else 'below ' + '+'.join(sorted(best))}; "
                     f"significantly above {len(beats)} of {len(others)} other subsets (Holm).")
        if beaten:
            verdicts.append(CONTRADICTED)
        elif best == allthree:
            verdicts.append(CONSISTENT if len(beats) == len(others) else DIRECTION)
        else:
            verdicts.append(NOT_SUPPORTED)
    if not parts:
        return Assessment(c.key, c.text, "none of the subsets the claim is about were run", INSUFFICIENT, metric)
    order = [CONTRADICTED, NOT_SUPPORTED, INSUFFICIENT, DIRECTION, CONSISTENT]
    verdict = min(verdicts, key=order.index) if verdicts else INSUFFICIENT
    note = ("(k-NN accuracy, because top-1 of a classifier head trained without the supervised loss "
            "is not meaningful.)")
    return Assessment(c.key, c.text, " ".join(parts), verdict, metric, [note])

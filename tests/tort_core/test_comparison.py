"""`tort compare` as a sweep: per-arm overrides (`--baseline-set`) change the baseline's trials only."""

from __future__ import annotations

import pytest

from tort_core.errors import ConfigError
from tort_core.sweep.comparison import expand_comparison

TINY = {"epochs": 2, "optim.warmup_epochs": 1}


def _arms(exp):
    return {r: [t for t in exp.trials if t.config.recipe == r] for r in ("sota", "tort")}


def test_a_baseline_set_changes_the_baseline_and_leaves_the_method_trials_as_they_were():
    plain_spec, plain = expand_comparison("sota", "tort", None, 2, "demo", "scratch", sets=TINY)
    spec, exp = expand_comparison("sota", "tort", None, 2, "demo", "scratch", sets=TINY,
                                  baseline_sets={"optim.name": "adamw", "optim.weight_decay": 0.05})
    a, b = _arms(plain), _arms(exp)
    assert [t.id for t in b["tort"]] == [t.id for t in a["tort"]]  # the method's trials are shared
    assert {(t.config.optim.name, t.config.optim.weight_decay) for t in b["sota"]} == {("adamw", 0.05)}
    assert {t.config.optim.name for t in a["sota"]} == {"adam"}
    assert {t.config.optim.name for t in b["tort"]} == {"lookahead_adamw"}
    assert spec.name != plain_spec.name and spec.name.startswith("compare-tort-vs-sota-demo-scratch-")
    assert spec.description.endswith("with optim.name=adamw, optim.weight_decay=0.05 for sota only")
    assert all(t.axes["recipe"] == t.config.recipe for t in exp.trials)  # recipe stays the sweep's axis


@pytest.mark.parametrize("baseline_sets, sets, message", [
    ({"recipe": "tort"}, {}, "not a per-arm setting"),
    ({"seed": 3}, {}, "not a per-arm setting"),
    ({"optim.lr": 1e-3}, {"optim.lr": 1e-3}, "also set for both arms"),
    ({"optim.lrr": 1e-3}, {}, "unknown key 'optim.lrr'"),
])
def test_bad_baseline_sets_fail_before_anything_runs(baseline_sets, sets, message):
    with pytest.raises(ConfigError, match=message):
        expand_comparison("sota", "tort", None, 2, "demo", "scratch", sets={**TINY, **sets},
                          baseline_sets=baseline_sets)

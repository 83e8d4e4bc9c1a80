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


def _tree(root, classes=("a", "b")):
    import numpy as np
    from PIL import Image

    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((12, 12, 3), 40 * i + len(c), np.uint8)).save(root / split / c / f"{i}.png")
    return root


def test_two_imagefolder_roots_of_one_setting_are_one_comparison(tmp_path):
    # An ImageFolder root names a dataset, as --datasets does: comparisons of the same setting on two
    # roots add to one sweep (so the report tests them across datasets), with their own trials.
    flowers, cars = _tree(tmp_path / "flowers17"), _tree(tmp_path / "cars49", ("c", "d", "e"))
    a_spec, a = expand_comparison("sota", "tort", None, 2, "small", "scratch", sets={**TINY, "data.root": str(flowers)})
    b_spec, b = expand_comparison("sota", "tort", None, 2, "small", "scratch", sets={**TINY, "data.root": str(cars)})
    assert a_spec.name == b_spec.name
    assert not {t.id for t in a.trials} & {t.id for t in b.trials}
    other, _ = expand_comparison("sota", "tort", None, 2, "small", "scratch",
                                 sets={**TINY, "data.root": str(cars), "optim.lr": 5e-4})
    assert other.name != a_spec.name  # any other setting still makes its own comparison


def test_epochs_and_a_set_that_only_together_are_valid_are_accepted():
    # --epochs 1 with the demo's 1 warm-up epoch is invalid alone; with --set optim.warmup_epochs=0 it is not
    spec, exp = expand_comparison("sota", "tort", None, 1, "demo", "scratch", epochs=1,
                                  sets={"optim.warmup_epochs": 0})
    assert {(t.config.epochs, t.config.optim.warmup_epochs) for t in exp.trials} == {(1, 0)}
    with pytest.raises(ConfigError, match="warmup_epochs"):
        expand_comparison("sota", "tort", None, 1, "demo", "scratch", epochs=1)

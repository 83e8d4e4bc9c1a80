"""Sweep specs: the shipped ablations are valid, and every bad spec fails before any trial starts,
with one line that names the file and the key, exit code 2 and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tort_core.errors import ConfigError
from tort_core.sweep import expand, load_spec, spec_from_dict

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
TORT = str(Path(sys.executable).with_name("tort"))

HEAD = "name: bad\nprofile: demo\n"

# (id, spec text, fragments the one-line message must contain besides the file name)
INVALID = [
    ("unknown-field-near-miss", HEAD + "seed: 3\n", ["seed", "did you mean 'seeds'"]),
    ("unknown-axis-key-near-miss", HEAD + "axes: {loss.teacher_tmp: [0.02]}\n",
     ["axes.loss.teacher_tmp", "did you mean 'loss.teacher_temp'"]),
    ("unknown-override-key", HEAD + "overrides: {optim.lrr: 0.1}\n", ["overrides.optim.lrr", "optim.lr"]),
    ("wrong-type", HEAD + "axes: {epochs: [10, ten]}\n", ["axes.epochs[1]", "valid integer"]),
    ("wrong-type-bool", HEAD + "axes: {views.teacher_rotated: [true, maybe]}\n",
     ["axes.views.teacher_rotated[1]", "boolean"]),
    ("empty-axis", HEAD + "axes: {loss.teacher_temp: []}\n", ["axes.loss.teacher_temp", "empty axis"]),
    ("zero-temperature", HEAD + "axes: {loss.teacher_temp: [0.0, 0.04]}\n",
     ["axes.loss.teacher_temp[0]", "greater than 0"]),
    ("negative-student-temp", HEAD + "axes: {loss.student_temp: [-0.1]}\n",
     ["axes.loss.student_temp[0]", "greater than 0"]),
    ("mask-scale-reversed", HEAD + "axes: {views.mask_scale: [[0.2, 0.4], [0.6, 0.4]]}\n",
     ["axes.views.mask_scale[1]", "0 < lo < hi < 1"]),
    ("mask-scale-hi-1", HEAD + "axes: {views.mask_scale: [[0.5, 1.0]]}\n", ["axes.views.mask_scale[0]", "lo < hi < 1"]),
    ("mask-scale-flat-pair", HEAD + "axes: {views.mask_scale: [0.1, 0.3]}\n",
     ["axes.views.mask_scale[0]", "[[0.1, 0.3], [0.2, 0.4]]"]),
    ("epochs-below-1", HEAD + "axes: {epochs: [0, 100]}\n", ["axes.epochs[0]", "greater than or equal to 1"]),
    ("unknown-loss", HEAD + "axes: {loss.enabled: [[distill], [distill, rotaton]]}\n",
     ["axes.loss.enabled[1]", "did you mean 'rotation'"]),
    ("unknown-dataset", "name: bad\ndatasets: [flowers101]\n", ["datasets[0]", "did you mean 'flowers102'"]),
    ("duplicate-axis-yaml", HEAD + "axes:\n  loss.teacher_temp: [0.02]\n  loss.teacher_temp: [0.04]\n",
     ["line 5", "loss.teacher_temp", "appears twice"]),
    ("duplicate-axis-zip", HEAD + "axes: {loss.teacher_temp: [0.02]}\nzip:\n  - {loss.teacher_temp: [0.04]}\n",
     ["zip[0].loss.teacher_temp", "duplicate axis"]),
    ("malformed-yaml", HEAD + "axes: {loss.teacher_temp: [0.02, 0.04}\n", ["line 3", "malformed YAML"]),
    ("axis-not-a-list", HEAD + "axes: {loss.teacher_temp: 0.04}\n", ["axes.loss.teacher_temp", "list of values"]),
    ("zip-unequal", HEAD + "zip:\n  - {loss.teacher_temp: [0.02, 0.04], loss.student_temp: [0.1]}\n",
     ["zip[0]", "equal lengths"]),
    ("seed-count-0", HEAD + "seeds: 0\n", ["seeds", ">= 1"]),
    ("seed-list-empty", HEAD + "seeds: []\n", ["seeds", "empty"]),
    ("seed-list-duplicate", HEAD + "seeds: [0, 0]\n", ["seeds", "twice"]),
    ("negative-gpus", HEAD + "resources: {gpus: -1}\n", ["resources.gpus", ">= 0"]),
    ("resources-near-miss", HEAD + "resources: {gpu: 1}\n", ["resources.gpu", "did you mean 'gpus'"]),
    ("negative-retries", HEAD + "retries: -1\n", ["retries", "greater than or equal to 0"]),
    ("unknown-recipe", "name: bad\nrecipe: tortt\n", ["recipe", "did you mean 'tort'"]),
    ("unknown-profile", "name: bad\nprofile: demoo\n", ["profile", "did you mean 'demo'"]),
    ("reserved-seed-axis", HEAD + "axes: {seed: [0, 1]}\n", ["axes.seed", "seeds:"]),
    ("reserved-dataset-override", HEAD + "overrides: {data.dataset: digits}\n", ["overrides.data.dataset", "datasets:"]),
    ("axis-and-override", HEAD + "overrides: {loss.teacher_temp: 0.04}\naxes: {loss.teacher_temp: [0.02]}\n",
     ["axes.loss.teacher_temp", "both an axis and an override"]),
    ("early-stop-metric", HEAD + "early_stop: {metric: test_top5}\n", ["early_stop.metric", "test_top1"]),
    ("duplicate-axis-value", HEAD + "axes: {loss.teacher_temp: [0.04, 0.04]}\n",
     ["axes.loss.teacher_temp[1]", "listed twice"]),
    ("rot-prob-above-1", HEAD + "axes: {views.rot_prob: [0.5, 1.5]}\n", ["axes.views.rot_prob[1]", "less than or equal to 1"]),
    ("max-concurrent-type", HEAD + "max_concurrent: four\n", ["max_concurrent", "valid integer"]),
    ("bad-name", "name: 'my sweep!'\n", ["name", "not a valid sweep name"]),
    ("not-a-mapping", "- name: x\n", ["YAML mapping"]),
    ("empty-file", "", ["empty"]),
    # valid field by field, invalid together: caught while expanding, still before any trial
    ("warmup-vs-epochs", HEAD + "axes: {epochs: [1, 6]}\n", ["trial epochs=1", "optim.warmup_epochs (1)"]),
]


def _run_main(monkeypatch, capsys, argv: list[str]) -> tuple[int, str, str]:
    import cli

    monkeypatch.setattr(sys, "argv", ["tort", *argv])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    cap = capsys.readouterr()
    return exc.value.code, cap.out, cap.err


@pytest.mark.parametrize("spec", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_shipped_specs_are_valid(spec):
    s = load_spec(spec)
    assert s.name == spec.stem and s.axes or s.zip


@pytest.mark.parametrize("name,text,fragments", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_spec_fails_before_any_trial(name, text, fragments, tmp_path, monkeypatch, capsys):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    results = tmp_path / "results"
    code, out, err = _run_main(monkeypatch, capsys, ["sweep", str(path), "--results", str(results), "--no-wandb"])
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0], lines[0]
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    assert not results.exists()  # nothing was started, not even the store


def test_corpus_is_large_enough():
    assert len(INVALID) >= 20


@pytest.mark.parametrize("name", ["unknown-field-near-miss", "malformed-yaml", "duplicate-axis-yaml"])
def test_invalid_spec_through_the_installed_command(name, tmp_path):
    text, fragments = next((t, f) for n, t, f in INVALID if n == name)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    proc = subprocess.run([TORT, "sweep", str(path), "--results", str(tmp_path / "r")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert str(path) in proc.stderr and all(f in proc.stderr for f in fragments)


def test_missing_spec_file_and_bad_set(tmp_path, monkeypatch, capsys):
    code, _, err = _run_main(monkeypatch, capsys, ["sweep", str(tmp_path / "nope.yaml")])
    assert code == 2 and "nope.yaml: spec file not found" in err
    spec = tmp_path / "ok.yaml"
    spec.write_text(HEAD + "axes: {loss.teacher_temp: [0.04]}\n")
    code, _, err = _run_main(monkeypatch, capsys, ["sweep", str(spec), "--set", "loss.teacher_tmp=0.1", "--dry-run"])
    assert code == 2 and "--set" in err and "did you mean 'loss.teacher_temp'" in err
    code, _, err = _run_main(monkeypatch, capsys, ["sweep", str(spec), "--resume", "--force"])
    assert code == 2 and "--resume and --force" in err


def test_nested_overrides_and_seed_forms():
    a = spec_from_dict({"name": "a", "overrides": {"loss": {"teacher_temp": 0.05}, "model.kwargs": {"depth": 2}},
                        "seeds": 3})
    assert a.overrides == {"loss.teacher_temp": 0.05, "model.kwargs": {"depth": 2}}
    assert a.seed_list == [0, 1, 2]
    assert spec_from_dict({"name": "b", "seeds": [4, 7]}).seed_list == [4, 7]
    with pytest.raises(ConfigError, match="resources.cpus"):
        spec_from_dict({"name": "c", "resources": {"cpus": 0}})
    assert spec_from_dict({"name": "d", "resources": {"gpus": 0.25}}).resources.gpus == 0.25


def test_a_spec_may_write_switches_as_bare_on_and_off(tmp_path):
    path = tmp_path / "switches.yaml"
    path.write_text("name: switches\nprofile: demo\noverrides: {optim.fused: off}\naxes:\n  eval.cache: [on, off]\n")
    exp = expand(load_spec(path))
    # eval.cache does not change what a run computes: the two grid points are one trial.
    assert len(exp.trials) == 1 and exp.duplicates == 1
    assert (exp.trials[0].config.eval.cache, exp.trials[0].config.optim.fused) == ("on", "off")


def test_a_missing_dataset_root_fails_before_any_trial(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TORT_DATA_ROOT", raising=False)
    results = tmp_path / "results"
    code, _, err = _run_main(monkeypatch, capsys, ["sweep", str(ROOT / "sweeps/rot_prob.yaml"), "--results",
                                                   str(results), "--no-wandb"])
    assert code == 2 and "rot_prob.yaml: dataset 'flowers102' needs a local root" in err and "TORT_DATA_ROOT" in err
    assert len(err.strip().splitlines()) == 1 and not results.exists()

"""Bad input is refused before torch, timm or Ray is imported: every invalid spec of the spec
corpus, bad `--set`s and bad names, through `cli.main` in a fresh interpreter that reports which
heavy modules each case left in `sys.modules`. (pandas may load: cross-key checks of a sweep's
trials run in the runner's planning, which reads the results store.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_sweep_spec import INVALID

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "timm", "ray", "torchvision")

# Runs each case through cli.main in this one process, in order, and prints per case its exit
# code, its stderr and the heavy modules imported so far.
DRIVER = r"""
import contextlib, io, json, sys
import cli
cases, heavy = json.load(sys.stdin), HEAVY
report = []
for argv in cases:
    sys.argv = ["tort", *argv]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            cli.main()
            code = 0
        except SystemExit as exit:
            code = exit.code
    report.append({"argv": argv, "code": code, "err": err.getvalue(), "out": out.getvalue(),
                   "heavy": [m for m in heavy if m in sys.modules]})
print(json.dumps(report))
"""


def run_cases(cases: list[list[str]], cwd: Path) -> list[dict]:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "WANDB_MODE": "offline", "HOME": str(cwd)}
    proc = subprocess.run([sys.executable, "-c", DRIVER.replace("HEAVY", repr(HEAVY))], input=json.dumps(cases),
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_every_invalid_spec_fails_without_importing_torch(tmp_path):
    cases = []
    for name, text, _ in INVALID:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        cases.append(["sweep", str(path), "--results", str(tmp_path / "results"), "--no-wandb"])
    report = run_cases(cases, tmp_path)
    for (name, _, fragments), case in zip(INVALID, report):
        assert case["code"] == 2 and all(f in case["err"] for f in fragments), (name, case["err"])
        assert case["heavy"] == [], (name, case["heavy"])


def test_bad_sets_and_names_fail_without_importing_torch(tmp_path):
    spec = tmp_path / "ok.yaml"
    spec.write_text("name: ok\nprofile: demo\naxes: {loss.teacher_temp: [0.04, 0.06]}\n")
    cases = {
        "sweep --set key": (["sweep", str(spec), "--set", "loss.teacher_tmp=0.1"], "did you mean 'loss.teacher_temp'"),
        "sweep --set value": (["sweep", str(spec), "--set", "loss.student_temp=-1"], "loss.student_temp"),
        "sweep --set loss": (["sweep", str(spec), "--set", "loss.enabled=[distil]"], "did you mean 'distill'"),
        "sweep --set cross-key": (["sweep", str(spec), "--set", "epochs=2", "--set", "optim.warmup_epochs=5"],
                                  "optim.warmup_epochs (5) must be smaller than epochs (2)"),
        "train --set key": (["train", "--profile", "demo", "--set", "loss.teacher_tmp=0.1"],
                            "did you mean 'loss.teacher_temp'"),
        "train recipe": (["train", "--recipe", "tortt"], "unknown recipe 'tortt'"),
        "train dataset": (["train", "--profile", "demo", "--dataset", "flowerz"], "data.dataset"),
        "config loss weight": (["config", "--set", "loss.weights.rotaton=1"], "did you mean 'rotation'"),
        "sota with tort's losses": (["config", "--recipe", "sota", "--set", "loss.enabled=[distill]"],
                                    "recipe 'sota' trains with ['supervised'] only"),
    }
    report = run_cases([argv for argv, _ in cases.values()], tmp_path)
    for (name, (_, fragment)), case in zip(cases.items(), report):
        lines = case["err"].strip().splitlines()
        assert case["code"] == 2 and len(lines) == 1 and fragment in lines[0], (name, case["err"])
        assert case["heavy"] == [], (name, case["heavy"])
    assert not (tmp_path / "runs").exists()


def test_a_valid_config_and_the_listings_need_no_torch_either(tmp_path):
    # Only a timm name (model, optimizer) needs timm: `config` prints the resolved YAML after it.
    report = run_cases([["recipes"], ["datasets"], ["config", "--keys"]], tmp_path)
    assert [c["code"] for c in report] == [0, 0, 0] and all(c["heavy"] == [] for c in report), report
    assert "sota:" in report[0]["out"] and "region:" in report[0]["out"]
    assert "flowers102: Oxford Flowers-102; 102 classes" in report[1]["out"]

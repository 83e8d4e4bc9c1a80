"""analysis.report: the HTML report holds every section, embeds every figure, writes every table,
and on a store that is still filling says what is missing instead of inventing numbers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from analysis.claims import CLAIMS
from analysis.load import Store
from analysis.report import build_report


def _ablation(key, values, seeds=(0, 1), sweep=None, **extra):
    return [{"recipe": "tort", "dataset": "digits", "seed": s, "sweep": sweep or key, "overrides": {key: v},
             "axes": {key: v}, **extra} for v in values for s in seeds]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from synthetic_store import comparison_specs, make_frames

    specs = comparison_specs(datasets=("digits", "flowers102"), seeds=(0, 1))
    specs += _ablation("loss.teacher_temp", [0.02, 0.04], sweep="teacher_temp")
    specs += _ablation("loss.enabled", [["distill"], ["distill", "supervised", "rotation"]], sweep="loss_subsets")
    specs += [{"recipe": "tort", "dataset": "digits", "seed": 2, "sweep": "loss_subsets", "upto": 3,
               "overrides": {"loss.enabled": ["rotation"]}, "axes": {"loss.enabled": ["rotation"]}},  # running
              {"recipe": "tort", "dataset": "digits", "seed": 3, "sweep": "loss_subsets", "status": "failed",
               "upto": 1, "overrides": {"loss.enabled": ["rotation"]}, "axes": {"loss.enabled": ["rotation"]}}]
    epochs, trials = make_frames(specs)
    members = pd.concat([trials[["sweep", "trial_id", "axes"]], epochs[["sweep", "trial_id", "axes"]]])
    members = pd.concat([members.drop_duplicates(["sweep", "trial_id"]),
                         pd.DataFrame([{"sweep": "teacher_temp", "trial_id": "planned0", "axes": "{}"}])])
    out = tmp_path_factory.mktemp("report")
    return build_report(Store.from_frames(epochs, trials, members=members), out)


@pytest.mark.slow
def test_html_has_every_section_and_embeds_every_figure(report):
    html = report.html.read_text()
    for anchor in ("status", "comparison", "ablations", "claims", "provenance"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html
    pngs = [p for p in report.figures if p.suffix == ".png"]
    svgs = [p for p in report.figures if p.suffix == ".svg"]
    assert len(pngs) == len(svgs) >= 5  # 2 curve figures + 2 ablation figures + distill-loss curves
    assert html.count("data:image/png;base64,") == len(pngs)
    assert all(p.stat().st_size > 0 for p in report.figures)
    assert "<script" not in html and "http" not in re.sub(r'href="figures/[^"]+"', "", html).replace(
        "width=device-width", "")  # self-contained: no external resources


def test_tables_are_written_as_csv(report):
    names = {p.name for p in report.tables}
    assert {"status.csv", "claims.csv", "provenance.csv", "ablation_teacher_temp.csv"} <= names
    claims = pd.read_csv(report.out_dir / "tables" / "claims.csv")
    assert set(claims["key"]) == set(CLAIMS)  # every thesis claim appears, run or not
    assert (claims.loc[claims.key == "epochs", "verdict"] == "not run").all()


def test_what_is_missing_is_listed(report):
    text = " | ".join(report.missing)
    assert "no finetune comparison (thesis figures 4.5–4.8)" in text
    assert "sweep teacher_temp: 1 planned trial(s) not started" in text
    assert "not finished (running)" in text
    assert "thesis datasets without trials: fgvc_aircraft, stanford_cars, oxford_pet" in text
    html = report.html.read_text()
    assert "Missing or incomplete" in html and "failed trials" in html


def test_comparison_uses_completed_trials_only(report):
    (cmp,) = report.comparisons
    rec = cmp.recipes.set_index(["dataset", "recipe"])
    assert rec.loc[("digits", "tort"), "seeds"] == 2 and rec.loc[("flowers102", "sota"), "seeds"] == 2


def test_without_a_comparison_sweep_all_non_ablation_trials_are_compared(tmp_path, frames):
    specs = [{"recipe": r, "dataset": "digits", "seed": s, "sweep": f"runs-{r}", "axes": {}}
             for r in ("tort", "sota") for s in (0, 1)]
    res = build_report(Store.from_frames(*frames(specs)), tmp_path)
    (cmp,) = res.comparisons
    assert sorted(cmp.recipes["seeds"]) == [2, 2]
    assert "all trials outside ablation sweeps" in res.html.read_text()


def test_unknown_recipe_is_an_error_not_an_empty_report(tmp_path, frames):
    from analysis.errors import AnalysisError

    store = Store.from_frames(*frames([{"recipe": "tort", "seed": 0}]))
    with pytest.raises(AnalysisError, match="unknown recipe 'sotaa'"):
        build_report(store, tmp_path, baseline="sotaa")


def test_empty_store_reports_absence_without_numbers(tmp_path):
    members = pd.DataFrame([{"sweep": "teacher_temp", "trial_id": "x", "axes": '{"loss.teacher_temp": 0.02}'}])
    res = build_report(Store.from_frames(None, None, members=members), tmp_path)
    html = res.html.read_text()
    assert "No completed tort and sota trials to compare yet" in html
    assert "No ablation sweeps in the store yet" in html
    assert "sweep teacher_temp: 1 planned trial(s) not started" in " ".join(res.missing)
    assert not re.search(r"\d+\.\d+ \[", html)  # no estimate of anything
    assert res.figures == []

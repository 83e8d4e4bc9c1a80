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
    assert len(pngs) == len(svgs) >= 6  # 2 curve figures, a profile, 2 ablation figures, distill-loss curves
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


def test_what_is_missing_is_what_was_asked_for_and_not_done(report):
    text = " | ".join(report.missing)
    assert "sweep teacher_temp: 1 planned trial(s) not started" in text
    assert "not finished (running)" in text and "sweep loss_subsets: 1 trial(s) failed" in text
    assert "thesis" not in text and "finetune" not in text  # never asked for in this store: not "missing"
    not_run = " | ".join(report.not_run)
    assert "a finetune comparison (thesis figures 4.5–4.8)" in not_run
    assert "comparisons on the thesis datasets fgvc_aircraft, stanford_cars, oxford_pet" in not_run
    assert "ablations of loss.label_smoothing" in not_run and "loss.teacher_temp" not in not_run
    html = report.html.read_text()
    assert "Missing or incomplete" in html and "Not run in this store" in html and "failed trials" in html


def test_blocks_state_their_settings_and_the_primary_test(report):
    html = report.html.read_text()
    assert html.count("Settings: profile: demo") >= 3  # the comparison and both ablations
    assert "Primary test of each comparison: Welch" in html and "docs/statistics.md" in html
    assert "not comparable (profile demo)" in html


def test_a_demo_store_does_not_call_the_thesis_ablations_missing(tmp_path, frames, specs):
    res = build_report(Store.from_frames(*frames(specs(datasets=("digits",), seeds=(0, 1)))), tmp_path)
    assert res.missing == []
    assert any(n.startswith("ablations of loss.label_smoothing, views.rot_prob") for n in res.not_run)
    claims = pd.read_csv(tmp_path / "tables" / "claims.csv")
    assert (claims["verdict"] == "not run").all() and len(claims) == len(CLAIMS)


@pytest.mark.slow
def test_three_values_over_two_datasets_get_ranks_and_a_cd_diagram(tmp_path, frames):
    specs = [{"recipe": "tort", "dataset": ds, "seed": s, "sweep": "tt", "overrides": {"loss.teacher_temp": v},
              "axes": {"loss.teacher_temp": v}, "plateau": 30.0 + 500 * v, "noise": 0.3} for v in (0.02, 0.04, 0.06)
             for ds in ("digits", "flowers102") for s in (0, 1)]
    res = build_report(Store.from_frames(*frames(specs)), tmp_path)
    names = {p.name for p in res.figures}
    assert "cd_ablation_tt.png" in names
    ranks = pd.read_csv(tmp_path / "tables" / "ranks_ablation_tt.csv", dtype={"arm": str})
    assert list(ranks["arm"]) == ["0.06", "0.04", "0.02"] and list(ranks["mean rank"]) == [1.0, 2.0, 3.0]


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
    assert "No ablation sweeps in the store" in html
    assert "sweep teacher_temp: 1 planned trial(s) not started" in " ".join(res.missing)
    assert not re.search(r"\d+\.\d+ \[", html)  # no estimate of anything
    assert res.figures == []

"""Analysis of the results store: load, aggregate, test, plot, report. Never imports torch's
training code or starts Ray (running a comparison is `tort_core.sweep.comparison`).

    from analysis.load import load_store            # the store as tables
    from analysis.compare import compare            # method vs baseline, per and across datasets
    from analysis.ablations import find_ablations   # every ablation sweep, each value vs the default
    from analysis.claims import assess              # the thesis's claims beside the data
    from analysis import stats, across, power       # two arms; across datasets; seeds needed
    from analysis import health, reference          # failed/collapsed runs; chance levels
    from analysis import metrics, plots             # curves, convergence, time; figures
    from analysis.report import build_report        # what `tort report` writes
    python -m analysis.simulation                   # the coverage table in docs/statistics.md

Modules import matplotlib only when plotting (plots, report), so statistics stay light.
docs/statistics.md says what each number means.
"""

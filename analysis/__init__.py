"""Analysis of the results store: load, aggregate, test, plot, report.

    from analysis.load import load_store            # the store as tables
    from analysis.compare import compare            # method vs baseline, per and across datasets
    from analysis.ablations import find_ablations   # every ablation sweep, each value vs the default
    from analysis.claims import assess              # the thesis's claims beside the data
    from analysis import stats, metrics, plots      # the building blocks
    from analysis.report import build_report        # what `tort report` writes

Modules import matplotlib only when plotting (plots, report), so statistics stay light.
"""

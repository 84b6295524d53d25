"""The offline evaluation lab: `recsys evaluate`, `recsys tune` and `recsys ab-report`.

Not part of the nightly job: it fits the same models on a time split and scores every strategy
and baseline side by side, tunes blend weights on the validation period, and reports A/B
experiments from exposures and later events.
"""

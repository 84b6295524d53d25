"""Spark variants of the nightly job's loading and fitting (`recsys train --engine spark`).

Imported only when Spark is asked for: pyspark is the optional `[spark]` extra.
"""

"""Analytics: the read-only Parquet snapshot analysts read (`snapshot.py`), the numbers on it (`summary.py`), the
colour vocabulary (`colours.py`), and the `analytics_snapshot` asset. The static report and the dashboard read the
snapshot through `open_snapshot` and compute their numbers with `summary`, so they agree."""

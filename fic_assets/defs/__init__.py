"""The Dagster code location, one folder per domain; `fic_assets.definitions` loads this folder with `dg`.

Each domain folder holds its plain code (functions testable without Dagster) beside its Dagster layer
(`assets.py`, `sensors.py`, `jobs.py`): the assets read their inputs, call one plain function and return metadata.
Every module here is imported when the code location loads, so the heavy libraries (torch, timm, scikit-learn)
are imported inside the functions that need them.

    crawl/        the shop crawl: brands, pieces, image URLs (the Scrapy project itself is crawler/fic_crawler)
    labelling/    Label Studio: server, client, projects, tasks, labelling rounds, human labels
    dataset/      the labelled image set: download cache, image directory, DVC + S3 versioning
    model/        the classifier: training, gate, model artifact, the one scoring path
    predictions/  per-brand predictions with the production model
    analytics/    the read-only Parquet snapshot analysts read, and the summary functions on it
    reports/      the per-brand HTML report (from the snapshot)
    operations/   platform upkeep (dead runs)
    shared.py     Dagster pieces every domain uses: the brand partitions, the DuckDB pool, range run requests
    resources.py  one resource per outside system, configured from environment variables
"""

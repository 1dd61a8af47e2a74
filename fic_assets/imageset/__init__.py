"""The training image set: a URL-keyed download cache, the labelled image directory, its DVC versioning.

Plain functions and classes, no Dagster: the assets in fic_assets/defs call them.
"""

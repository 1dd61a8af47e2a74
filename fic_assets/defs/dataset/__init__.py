"""The training image set: a URL-keyed download cache, the labelled image directory, its DVC + S3 versioning.

`build.py` builds the directory (and `publish_image_set`, what the `image_set` asset runs, versions and pushes it).
"""

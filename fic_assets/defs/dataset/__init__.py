"""The training image set: a URL-keyed download cache, the labelled image directory, its DVC + S3 versioning."""

"""fic: the Fashion Image Classifier platform (Dagster code location)."""

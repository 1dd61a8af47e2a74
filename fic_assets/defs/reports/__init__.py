"""The per-brand HTML report over the analytics snapshot (`brand_report.py`, its Jinja template, its asset)."""

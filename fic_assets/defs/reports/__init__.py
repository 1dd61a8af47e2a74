"""The per-brand HTML report over the platform's DuckDB (`brand_report.py`, its Jinja template, its asset)."""

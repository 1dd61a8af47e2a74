"""Static reports over the platform's DuckDB (plain functions, no Dagster): the per-brand HTML report."""

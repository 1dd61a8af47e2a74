"""Plumbing every domain uses, no Dagster assets: settings, the DuckDB warehouse (schema, upserts), local side
processes, the local S3, networking and image decoding helpers, and the Dagster instance files."""

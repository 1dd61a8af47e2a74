import dagster as dg

# Keyed by brand slug ([a-z0-9-]: no "/", ",", quotes or "..." that Dagster's partition syntax reserves);
# the display name ("Levi's", "Selected Femme/Homme") lives in DuckDB `brands`.
brand_partitions = dg.DynamicPartitionsDefinition(name="brands")

# Every asset that writes DuckDB runs in this pool: DuckDB allows a single writer process at a time.
DUCKDB_POOL = "duckdb"

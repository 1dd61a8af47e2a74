"""One folder per domain; each exposes `defs`, merged in fic_assets.definitions."""

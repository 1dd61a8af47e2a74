"""The offline demo: `shop/` serves a generated Zalando-like catalogue, `run.py` is `fic demo` (the whole loop)."""

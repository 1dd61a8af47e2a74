"""The local demo shop: a generated fake Zalando catalogue served on 127.0.0.1 (see docs/shop-markup.md).

catalogue.py builds brands, products and images from a seed and keeps the truth; images.py draws the images;
pages.py renders every response; server.py serves them (`fic demo-shop`).
"""

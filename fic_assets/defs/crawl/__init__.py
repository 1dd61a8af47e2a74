"""The shop crawl: the brand list, each brand's pieces and image URLs, written to DuckDB.

The parser and the spiders are the Scrapy project in crawler/fic_crawler; `crawler.py` runs it in a subprocess.
"""

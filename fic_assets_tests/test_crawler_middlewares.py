"""The crawler's downloader middlewares, on real Scrapy requests and responses."""

from __future__ import annotations

from scrapy import Request, Spider
from scrapy.http import HtmlResponse
from scrapy.settings import Settings

from fic_crawler import settings as project_settings
from fic_crawler.middlewares import META_REFRESH_HEAD_BYTES, HeadMetaRefreshMiddleware

URL = "http://127.0.0.1:8000/levis/"
WEIGHT = b"<script>" + b'{"state": "' + b"x" * 700_000 + b'"}</script>'


def middleware() -> tuple[HeadMetaRefreshMiddleware, Spider]:
    return HeadMetaRefreshMiddleware(Settings()), Spider("test")


def page(head: bytes) -> HtmlResponse:
    body = b"<!DOCTYPE html><html><head>" + head + b"</head><body>" + WEIGHT + b"</body></html>"
    return HtmlResponse(URL, body=body, headers={"Content-Type": "text/html; charset=utf-8"})


def test_real_size_page_with_a_meta_refresh_in_its_head_still_redirects():
    """Bad input: a 700 KB page whose head says to go elsewhere; read from the head only, it still redirects."""
    mw, spider = middleware()
    result = mw.process_response(Request(URL), page(b'<meta http-equiv="refresh" content="0; url=/levis/?p=1">'), spider)
    assert isinstance(result, Request) and result.url == "http://127.0.0.1:8000/levis/?p=1"


def test_real_size_page_without_a_meta_refresh_is_passed_on_whole_and_undecoded():
    mw, spider = middleware()
    response = page(b"<title>Levi's</title>")
    assert len(response.body) > META_REFRESH_HEAD_BYTES
    assert mw.process_response(Request(URL), response, spider) is response
    assert response._cached_ubody is None  # the whole body was never decoded to text (Scrapy caches it there)


def test_project_settings_replace_scrapys_meta_refresh_middleware():
    mws = project_settings.DOWNLOADER_MIDDLEWARES
    assert mws["scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware"] is None
    assert mws["fic_crawler.middlewares.HeadMetaRefreshMiddleware"] == 580

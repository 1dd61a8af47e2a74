"""Downloader middlewares of the fic crawler."""

from __future__ import annotations

from scrapy import Request, Spider
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware
from scrapy.http import Response

# Scrapy reads a meta refresh from the first 4096 characters of the page; at most 4 bytes a character.
META_REFRESH_HEAD_BYTES = 4 * 4096


class HeadMetaRefreshMiddleware(MetaRefreshMiddleware):
    """Scrapy's meta-refresh redirect, reading only the head of the page.

    Scrapy's own decodes the whole body (`response.text`) to look at its first 4096 characters: on a real-size
    page (~700 KB) that decode is the crawl's largest single cost, and the decoded text (up to 2.8 MB as a str)
    then lives as long as the response. Here Scrapy's logic runs on a copy of the response cut to its head.
    """

    def process_response(self, request: Request, response: Response, spider: Spider) -> Request | Response:
        if len(response.body) <= META_REFRESH_HEAD_BYTES:
            return super().process_response(request, response, spider)
        head = response.replace(body=response.body[:META_REFRESH_HEAD_BYTES])
        result = super().process_response(request, head, spider)
        return response if result is head else result

"""Every response of the demo shop, rendered from the catalogue: no sockets here, so it is easy to test.

The shapes follow docs/shop-markup.md (the contract with the crawler); class names are random-looking
strings that differ per template, so nothing can come to rely on them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from fic_assets.demo.shop import images
from fic_assets.demo.shop.weight import PageWeight
from fic_assets.demo.shop.catalogue import (
    CATEGORIES,
    Brand,
    Catalogue,
    Product,
    format_eur,
    image_url,
    product_url,
    seeded,
    truth_csv,
)

PAGE_SIZE = 24
RECOMMENDATIONS = (("Das könnte dir auch gefallen", 24), ("Andere Kunden kauften auch", 24))
THUMB_WIDTH = 156
CARD_WIDTH = 300
HTML = "text/html; charset=utf-8"
ROBOTS = "User-agent: *\nDisallow: /myaccount/\nDisallow: /cart/\nDisallow: /_demo/\n"
SHOP_ID = "fic-demo-shop"  # what /_demo/health answers, so `--background` knows its own shop


SPLICE = "\x00"  # marks where pre-encoded page weight goes: never in a rendered page otherwise


def spliced(page: str, parts: dict[str, bytes]) -> bytes:
    """The rendered page with each `\\x00name\\x00` placeholder replaced by parts[name] (already UTF-8)."""
    pieces = page.split(SPLICE)
    return b"".join(parts[piece] if index % 2 else piece.encode() for index, piece in enumerate(pieces))


def placeholders(parts: dict[str, bytes]) -> dict[str, Markup]:
    return {name: Markup(f"{SPLICE}{name}{SPLICE}") for name in parts}


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes


class ClassNames:
    """Hashed-looking class strings ("sDq_FX _4sa1cA FxZV-M") for any role, fixed per seed and template."""

    FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"  # a class never starts with a digit
    ALPHABET = FIRST + "0123456789-"

    def __init__(self, seed: int, template: str) -> None:
        self._prefix = f"{seed}:{template}:"

    def __getattr__(self, role: str) -> str:
        if role.startswith("_"):
            raise AttributeError(role)
        return _class_string(self._prefix, role)


@lru_cache(maxsize=None)
def _class_string(prefix: str, role: str) -> str:
    """Made once per (seed, template, role): a page reads thousands of them."""
    digest = hashlib.blake2b((prefix + role).encode(), digest_size=19).digest()
    tokens = [digest[1 + 6 * n : 7 + 6 * n] for n in range(2 + digest[0] % 2)]
    first, alphabet = ClassNames.FIRST, ClassNames.ALPHABET
    return " ".join(first[token[0] % len(first)] + "".join(alphabet[b % len(alphabet)] for b in token[1:]) for token in tokens)


def script_json(data: object) -> str:
    """JSON for inside a <script>: "</" would end the element early."""
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def card_alt(product: Product) -> str:
    return f"{product.brand.name} {product.name}"


def recommendations(catalogue: Catalogue, product: Product, count: int) -> list[Product]:
    """Other products for the recommendation cards, the same on every request.

    Never a product whose card alt text contains this product's name: the crawler's HTML fallback picks
    gallery images by that name, and the trap should be the other products' images, not a name clash.
    """
    candidates = [p for p in catalogue.products if p.sku != product.sku and product.name not in card_alt(p)]
    return seeded(catalogue.seed, "recommendations", product.sku).sample(candidates, min(count, len(candidates)))


class Shop:
    """Renders the pages of one catalogue; the base URL comes with each request (from its Host header)."""

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.env = Environment(
            loader=FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["nav_categories"] = list(CATEGORIES.items())
        self.weight = PageWeight(catalogue)
        self._recommended: dict[str, list[Product]] = {}
        self._main: dict[tuple[str, str], str] = {}

    # --- plumbing -------------------------------------------------------------------------------------

    def render(self, template: str, **context: object) -> str:
        cls = ClassNames(self.catalogue.seed, template)
        return self.env.get_template(template).render(cls=cls, **context)

    def html(self, template: str, status: int = 200, **context: object) -> Response:
        return Response(status, HTML, self.render(template, **context).encode())

    def not_found(self) -> Response:
        return self.html("not_found.html", status=404)

    def respond(self, path: str, query: dict[str, list[str]], base_url: str) -> Response:
        """The response for a GET of path?query on the shop served at base_url."""
        path = unquote(path)
        fixed: dict[str, Callable[[], Response]] = {
            "/robots.txt": lambda: Response(200, "text/plain; charset=utf-8", ROBOTS.encode()),
            "/": self.home,
            "/brands/": self.brand_index,
            "/_demo/truth.csv": lambda: Response(
                200, "text/csv; charset=utf-8", truth_csv(self.catalogue, base_url).encode()
            ),
            "/_demo/health": self.health,
        }
        if path in fixed:
            return fixed[path]()
        if path.startswith("/img/article/") and path.endswith(".jpg"):
            return self.image(path.removeprefix("/img/article/").removesuffix(".jpg"), query)
        if path.startswith("/_js/"):
            product = self.catalogue.product_by_path.get(path.removeprefix("/_js"))
            return self.js_product_page(product, base_url) if product else self.not_found()
        if path in self.catalogue.product_by_path:
            return self.product_page(self.catalogue.product_by_path[path], base_url)
        return self.listing_route(path, query, base_url)

    def listing_route(self, path: str, query: dict[str, list[str]], base_url: str) -> Response:
        """/{brand}/, /{category}/{brand}/ (both with ?p=N) and /{category}/."""
        parts = path.strip("/").split("/") if path.endswith("/") else []
        brands = self.catalogue.brand_by_path
        page_text = query.get("p", ["1"])[0]
        page = int(page_text) if page_text.isdigit() else 0
        if len(parts) == 1 and parts[0] in brands:
            return self.listing(base_url, brands[parts[0]], None, page)
        if len(parts) == 1 and parts[0] in CATEGORIES:
            return self.category_index(parts[0])
        if len(parts) == 2 and parts[0] in CATEGORIES and parts[1] in brands:
            return self.listing(base_url, brands[parts[1]], parts[0], page)
        return self.not_found()

    # --- pages ----------------------------------------------------------------------------------------

    def health(self) -> Response:
        photos = self.catalogue.photos
        body = {"shop": SHOP_ID, "seed": self.catalogue.seed, "products": len(self.catalogue.products),
                "photos": photos.describe() if photos else None}
        return Response(200, "application/json", json.dumps(body).encode())

    def home(self) -> Response:
        links = [("/brands/", "Alle Marken")] + [(f"/{path}/", label) for path, label in CATEGORIES.items()]
        return self.html("links.html", title="Demo-Shop", links=links)

    def brand_index(self) -> Response:
        links = [(f"/{brand.path}/", brand.name) for brand in self.catalogue.brands]
        return self.html("links.html", title="Marken von A bis Z", links=links)

    def category_index(self, category: str) -> Response:
        links = [(f"/{category}/{brand.path}/", brand.name) for brand in self.catalogue.brands
                 if category in brand.categories and self.catalogue.listing(brand.path, category)]
        return self.html("links.html", title=CATEGORIES[category], links=links)

    def card(self, base_url: str, product: Product, absolute: bool, width: int) -> dict[str, str | None]:
        return {
            "href": product_url(base_url, product) if absolute else product.path,
            "img": image_url(base_url, product.images[0], width),
            "alt": card_alt(product),
            "brand": product.brand.name,
            "name": product.name,
            "price": format_eur(product.price),
            "old_price": format_eur(product.old_price) if product.old_price else None,
        }

    def listing(self, base_url: str, brand: Brand, category: str | None, page: int) -> Response:
        products = self.catalogue.listing(brand.path, category)
        pages = math.ceil(len(products) / PAGE_SIZE)
        if not 1 <= page <= pages:
            return self.not_found()
        listing_path = f"/{category}/{brand.path}/" if category else f"/{brand.path}/"

        def href(number: int) -> str:
            return listing_path if number == 1 else f"{listing_path}?p={number}"

        chunk = products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        weight = self.weight.listing_parts(base_url, chunk)
        rendered = self.render(
            "listing.html",
            **placeholders(weight),
            title=f"{brand.name} | {CATEGORIES[category]}" if category else brand.name,
            total=len(products),
            # Every third card links absolutely, the rest relative to the shop root, as on the real site.
            cards=[self.card(base_url, p, index % 3 == 0, CARD_WIDTH) for index, p in enumerate(chunk)],
            page=page,
            pages=pages,
            page_links=[(number, href(number)) for number in range(1, pages + 1)],
            previous=href(page - 1) if page > 1 else None,
            next=href(page + 1) if page < pages else None,
        )
        return Response(200, HTML, spliced(rendered, weight))

    def jsonld(self, base_url: str, product: Product) -> tuple[list[str], list[str]]:
        """(head scripts, end-of-body scripts) of ld+json text; the Product sits at the end of the body, so a
        page truncated before its gallery has no structured data either."""
        if product.page_defect == "no_jsonld":
            return [], []
        data = {
            "@context": "http://schema.org",
            "@type": "Product",
            "name": product.name,
            "sku": product.sku,
            "brand": {"@type": "Brand", "name": product.brand.name},
            "color": product.colour,
            "image": [image_url(base_url, image) for image in product.images],
            "url": product_url(base_url, product),
        }
        if product.page_defect != "missing_price":
            data["offers"] = [
                {"@type": "Offer", "price": offer.price, "priceCurrency": "EUR", "sku": offer.sku,
                 "availability": f"http://schema.org/{'InStock' if offer.in_stock else 'OutOfStock'}"}
                for offer in product.offers
            ]
        organization = {"@context": "http://schema.org", "@type": "Organization", "name": "Demo-Shop", "url": base_url + "/"}
        shaped: object = {
            "object": data,
            "list": [data, organization],
            "graph": {"@context": "http://schema.org", "@graph": [organization, {k: v for k, v in data.items() if k != "@context"}]},
        }[product.jsonld_shape]
        text = script_json(shaped)
        if product.page_defect == "broken_jsonld":
            text = text[: len(text) // 2]  # cut mid-way: no lenient parser can mend it
        return [script_json(self.breadcrumbs(base_url, product))], [text]

    def trail(self, product: Product) -> list[tuple[str, str]]:
        """(name, path) of the product's breadcrumb trail: home > category > brand > product, as on the real site."""
        return [
            ("Startseite", "/"),
            (CATEGORIES[product.category], f"/{product.category}/"),
            (product.brand.name, f"/{product.brand.path}/"),
            (product.name, product.path),
        ]

    def breadcrumbs(self, base_url: str, product: Product) -> dict:
        trail = [(name, base_url + path) for name, path in self.trail(product)]
        return {
            "@context": "http://schema.org",
            "@type": "BreadcrumbList",
            "itemListElement": [
                {"@type": "ListItem", "position": position, "name": name, "item": url}
                for position, (name, url) in enumerate(trail, start=1)
            ],
        }

    def product_main(self, base_url: str, product: Product) -> str:
        """The visible product markup (header, gallery, recommendations), shared by the static and JS pages.

        Rendered once per product and base URL (~40 KB each, the costly part of a page: 48 cards), so a crawl that
        comes back for a page costs string joins."""
        key = (base_url, product.sku)
        if key not in self._main:
            self._main[key] = self._product_main(base_url, product)
        return self._main[key]

    def _product_main(self, base_url: str, product: Product) -> str:
        alt = f"{product.brand.name} {product.name} - {product.colour}"
        gallery = [{"src": image_url(base_url, image), "thumb": image_url(base_url, image, THUMB_WIDTH), "alt": alt}
                   for image in product.images]
        others = iter(self.recommended(product))
        sections = [
            # Recommendation cards show the other product's gallery URL itself: a crawler taking every image
            # on the page would file another product's image under this one.
            (title, [self.card(base_url, other, index % 2 == 0, 1800) for index, other in zip(range(count), others)])
            for title, count in RECOMMENDATIONS
        ]
        show_price = product.page_defect != "missing_price"
        return self.render(
            "product_main.html",
            product=product,
            brand=product.brand,
            price=format_eur(product.price) if show_price else None,
            old_price=format_eur(product.old_price) if show_price and product.old_price else None,
            gallery=gallery,
            sections=sections,
            # The visible trail (what a crawler reads when the JSON-LD BreadcrumbList is missing): the same as it.
            trail=self.trail(product),
        )

    def recommended(self, product: Product) -> list[Product]:
        """The page's recommendation cards, drawn once per product: the markup and its state show the same."""
        if product.sku not in self._recommended:
            self._recommended[product.sku] = recommendations(self.catalogue, product, sum(count for _, count in RECOMMENDATIONS))
        return self._recommended[product.sku]

    def product_page(self, product: Product, base_url: str) -> Response:
        head, end = self.jsonld(base_url, product)
        main = Markup(self.product_main(base_url, product))
        # The real page's weight (~700 KB: hydration state, styles, tracking) around the product: weight.py.
        weight = self.weight.product_parts(base_url, product, self.recommended(product))
        rendered = self.render("product.html", title=f"{product.brand.name} {product.name}", main=main,
                               canonical=product_url(base_url, product),
                               head_jsonld=[Markup(text) for text in head], end_jsonld=[Markup(text) for text in end],
                               **placeholders(weight))
        page = spliced(rendered, weight)
        if product.page_defect == "truncated":
            # The connection "broke" a few characters into the gallery: 200, correct length, no end.
            gallery = f'<ul class="{ClassNames(self.catalogue.seed, "product_main.html").gallery}"'.encode()
            page = page[: page.index(gallery) + 8]
        return Response(200, HTML, page)

    def js_product_page(self, product: Product, base_url: str) -> Response:
        """The same product built by inline JavaScript: the raw HTML holds no h1, no ld+json, no product."""
        head, end = self.jsonld(base_url, product)
        payload = {
            "title": f"{product.brand.name} {product.name} | Demo-Shop",
            "jsonld": head + end,
            "main": self.product_main(base_url, product),
        }
        encoded = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode()
        return self.html("product_js.html", payload=encoded)

    def image(self, image_id: str, query: dict[str, list[str]]) -> Response:
        found = self.catalogue.image_by_id.get(image_id)
        width_text = query.get("imwidth", [""])[0]
        width = images.served_width(int(width_text) if width_text.isdigit() else None)
        served = images.image_bytes(found[1], width) if found else None
        if served is None:
            return self.not_found()
        return Response(200, served.content_type, served.body)

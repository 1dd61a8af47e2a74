"""The demo shop's catalogue: brands, products, offers and images generated from a seed.

Everything is drawn from `random.Random` instances seeded with strings derived from the seed (never the
global random state, never the clock), so `build_catalogue(seed)` returns an equal catalogue on every call
and in every process. The kept truth of every image (worn or not) lives here too, away from the pages.

With a PhotoSet (`--photos DIR`, see photos.py) the catalogue is generated exactly the same, then every image
slot gets a real photo instead of a drawing: worn slots a photo from DIR/worn/, the others one from
DIR/not_worn/, dealt from a seeded shuffle of each folder (every photo once before any repeats), so the truth
is the photo's folder and about half of the images stay worn.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from slugify import slugify

if TYPE_CHECKING:
    from fic_assets.demo.shop.photos import Photo, PhotoSet

CATEGORIES: dict[str, str] = {"women-clothing": "Damenbekleidung", "men-clothing": "Herrenbekleidung", "shoes": "Schuhe"}

KINDS = ("worn", "packshot", "flatlay", "detail")
PAGE_DEFECTS = ("no_jsonld", "missing_price", "truncated", "broken_jsonld")
IMAGE_DEFECTS = ("truncated", "empty", "html", "cmyk", "png_alpha", "missing", "huge")
JSONLD_SHAPES = ("object", "list", "graph")

# Defects sit on fixed (brand path, index in the brand listing) places, the image defect on the second image,
# so a test or a person can find them without reading the generator. Spread over three brands.
PAGE_DEFECT_PLACES: dict[tuple[str, int], str] = {
    ("levis", 2): "no_jsonld",
    ("levis", 5): "broken_jsonld",
    ("jack-jones", 3): "missing_price",
    ("bjorn-borg", 4): "truncated",
}
IMAGE_DEFECT_PLACES: dict[tuple[str, int], str] = {
    ("levis", 8): "truncated",
    ("levis", 11): "huge",
    ("levis", 14): "missing",
    ("jack-jones", 6): "cmyk",
    ("jack-jones", 9): "png_alpha",
    ("bjorn-borg", 7): "empty",
    ("bjorn-borg", 10): "html",
}


@dataclass(frozen=True)
class Brand:
    name: str  # display name as the shop prints it: Levi's, Björn Borg, Jack & Jones
    path: str  # URL slug, [a-z0-9-]
    code: str  # first three SKU characters, like Zalando's brand prefix
    categories: tuple[str, ...]
    models: tuple[str, ...]  # model names that prefix product names ("501 ORIGINAL - ...")


@dataclass(frozen=True)
class GarmentType:
    name: str  # German shop name: "Jeans Straight Leg", "Strickpullover"
    shape: str  # what images.py draws: tshirt, longsleeve, jacket, trousers, dress, skirt, shoes
    sizes: str  # key of SIZE_RUNS
    price_range: tuple[int, int]  # whole euros
    categories: tuple[str, ...]
    denim: bool = False


@dataclass(frozen=True)
class Colour:
    name: str
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Image:
    id: str  # 32 hex digits, like the hashes in real image URLs
    position: int  # 0-based place in the product's gallery
    kind: str  # worn | packshot | flatlay | detail
    shape: str  # garment shape to draw
    rgb: tuple[int, int, int]  # garment colour
    defect: str | None = None  # one of IMAGE_DEFECTS
    photo: Photo | None = None  # the real photo served instead of a drawing (`--photos DIR`)

    @property
    def is_packshot(self) -> bool:
        """The shop's own flag (`filter=packshot` in the URL); only packshots carry it."""
        return self.kind == "packshot"

    @property
    def truth(self) -> str:
        if self.photo is not None:
            return self.photo.label  # the folder the photo sits in
        return "worn" if self.kind == "worn" else "not_worn"


@dataclass(frozen=True)
class Offer:
    size: str
    sku: str  # product SKU + a 7-digit size code, as on zalando.de
    price: str  # current price, "34.99"
    old_price: str | None  # struck price when on sale
    in_stock: bool


@dataclass(frozen=True)
class Product:
    sku: str  # [A-Z0-9]{9}-[A-Z0-9]{3}
    name: str
    brand: Brand
    category: str
    colour: str
    offers: tuple[Offer, ...]
    images: tuple[Image, ...]
    page_defect: str | None = None  # one of PAGE_DEFECTS
    brand_in_h1: bool = False  # markup variant: the brand link sits inside the h1
    jsonld_shape: str = "object"  # object | list | graph: how the Product sits in its ld+json script

    @property
    def item_id(self) -> str:
        return self.sku

    @cached_property
    def path(self) -> str:  # cached: slugify is slow and every page links dozens of products
        return f"/{slugify(f'{self.brand.path} {self.name}')}-{self.sku.lower()}.html"

    @property
    def cheapest(self) -> Offer:
        return min(self.offers, key=lambda offer: cents(offer.price))

    @property
    def price(self) -> str:
        """The item's price: the lowest current offer."""
        return self.cheapest.price

    @property
    def old_price(self) -> str | None:
        return self.cheapest.old_price


@dataclass(frozen=True)
class Catalogue:
    seed: int
    brands: tuple[Brand, ...]
    products: tuple[Product, ...]
    photos: PhotoSet | None = None  # the real photos the images show; None: drawn images

    @cached_property
    def brand_by_path(self) -> dict[str, Brand]:
        return {brand.path: brand for brand in self.brands}

    @cached_property
    def product_by_path(self) -> dict[str, Product]:
        return {product.path: product for product in self.products}

    @cached_property
    def image_by_id(self) -> dict[str, tuple[Product, Image]]:
        return {image.id: (product, image) for product in self.products for image in product.images}

    def listing(self, brand_path: str, category: str | None = None) -> list[Product]:
        """A brand's products in listing order, optionally only one category."""
        return [p for p in self.products if p.brand.path == brand_path and category in (None, p.category)]


BRANDS: tuple[Brand, ...] = (
    Brand("Levi's", "levis", "LE2", ("women-clothing", "men-clothing"), ("HOUSEMARK", "GRAPHIC", "ORIGINAL", "BATWING")),
    Brand("Björn Borg", "bjorn-borg", "BJ4", ("men-clothing", "women-clothing", "shoes"),
          ("CENTRE", "ESSENTIAL", "BORG LOGO", "STHLM")),
    Brand("Ève & Söhne", "eve-sohne", "EV1", ("women-clothing",), ("CÉLINE", "MARGOT", "ODILE", "HÉLÈNE")),
    Brand("Jack & Jones", "jack-jones", "JA2", ("men-clothing",), ("JJIGLENN", "JJEORGANIC", "JJJOSH", "JJECORP")),
    Brand("Selected Femme/Homme", "selected-femme-homme", "SE8", ("women-clothing", "men-clothing"),
          ("SLHTOWN", "SLFMARLA", "SLHNEW", "SLFTIA")),
    Brand("Marc O'Polo", "marc-o-polo", "MA3", ("women-clothing", "men-clothing", "shoes"), ("VIDAR", "SKARA", "KEMI")),
    Brand("Tommy Hilfiger", "tommy-hilfiger", "TO1", ("women-clothing", "men-clothing", "shoes"),
          ("ESSENTIAL", "1985 COLLECTION", "FLAG", "CORE")),
    Brand("s.Oliver", "s-oliver", "SO4", ("women-clothing", "men-clothing"), ()),
    Brand("Vero Moda", "vero-moda", "VE1", ("women-clothing",), ("VMKAYLA", "VMFILLI", "VMNAJA", "VMHOLLY")),
    Brand("adidas Originals", "adidas-originals", "AD1", ("women-clothing", "men-clothing", "shoes"),
          ("TREFOIL", "ADICOLOR", "ADIBREAK")),
    Brand("Fjällräven", "fjallraven", "FJ2", ("women-clothing", "men-clothing"), ("KÅNKEN", "ÖVIK", "VARDAG", "KEB")),
    Brand("Esprit", "esprit", "ES1", ("women-clothing", "men-clothing", "shoes"), ("CORE", "FLUENT")),
)

_WOMEN, _MEN, _SHOES = "women-clothing", "men-clothing", "shoes"
_CLOTHING = (_WOMEN, _MEN)

GARMENTS: tuple[GarmentType, ...] = (
    GarmentType("Jeans Straight Leg", "trousers", "jeans", (60, 130), _CLOTHING, denim=True),
    GarmentType("Jeans Slim Fit", "trousers", "jeans", (50, 120), _CLOTHING, denim=True),
    GarmentType("Jeans Skinny Fit", "trousers", "jeans", (40, 110), (_WOMEN,), denim=True),
    GarmentType("Jeans Relaxed Fit", "trousers", "jeans", (60, 130), _CLOTHING, denim=True),
    GarmentType("Chino", "trousers", "jeans", (40, 90), _CLOTHING),
    GarmentType("Jogginghose", "trousers", "letters", (30, 70), _CLOTHING),
    GarmentType("T-Shirt basic", "tshirt", "letters", (13, 35), _CLOTHING),
    GarmentType("T-Shirt print", "tshirt", "letters", (18, 40), _CLOTHING),
    GarmentType("Poloshirt", "tshirt", "letters", (30, 90), _CLOTHING),
    GarmentType("Strickpullover", "longsleeve", "letters", (40, 150), _CLOTHING),
    GarmentType("Sweatshirt", "longsleeve", "letters", (35, 90), _CLOTHING),
    GarmentType("Kapuzenpullover", "longsleeve", "letters", (45, 110), _CLOTHING),
    GarmentType("Hemd", "longsleeve", "letters", (35, 100), (_MEN,)),
    GarmentType("Bluse", "longsleeve", "letters", (30, 90), (_WOMEN,)),
    GarmentType("Jeansjacke", "jacket", "letters", (70, 140), _CLOTHING, denim=True),
    GarmentType("Winterjacke", "jacket", "letters", (120, 350), _CLOTHING),
    GarmentType("Übergangsjacke", "jacket", "letters", (80, 200), _CLOTHING),
    GarmentType("Blazer", "jacket", "letters", (90, 250), _CLOTHING),
    GarmentType("Jerseykleid", "dress", "letters", (30, 90), (_WOMEN,)),
    GarmentType("Freizeitkleid", "dress", "letters", (40, 120), (_WOMEN,)),
    GarmentType("Blusenkleid", "dress", "letters", (50, 130), (_WOMEN,)),
    GarmentType("A-Linien-Rock", "skirt", "letters", (30, 80), (_WOMEN,)),
    GarmentType("Jeansrock", "skirt", "letters", (35, 80), (_WOMEN,), denim=True),
    GarmentType("Sneaker low", "shoes", "shoes", (60, 160), (_SHOES,)),
    GarmentType("Stiefelette", "shoes", "shoes", (80, 200), (_SHOES,)),
    GarmentType("Schnürschuh", "shoes", "shoes", (70, 180), (_SHOES,)),
)

COLOURS: tuple[Colour, ...] = (
    Colour("schwarz", (28, 28, 30)), Colour("weiß", (238, 238, 232)), Colour("dunkelblau", (32, 44, 86)),
    Colour("navy", (24, 32, 64)), Colour("olive", (110, 112, 58)), Colour("bordeaux", (112, 24, 42)),
    Colour("hellgrau meliert", (182, 182, 178)), Colour("khaki", (168, 156, 108)), Colour("rosa", (232, 168, 182)),
    Colour("off-white", (236, 229, 212)), Colour("rot", (186, 32, 38)), Colour("camel", (188, 146, 98)),
    Colour("dark green", (34, 76, 52)), Colour("mint", (162, 218, 192)), Colour("black", (20, 20, 22)),
    Colour("light blue", (150, 186, 222)), Colour("senf", (206, 160, 40)), Colour("flieder", (182, 160, 214)),
)
DENIM_COLOURS: tuple[Colour, ...] = (
    Colour("stonewash", (112, 142, 176)), Colour("blue denim", (58, 86, 136)), Colour("dark blue denim", (34, 48, 82)),
    Colour("black denim", (40, 40, 46)), Colour("light-blue denim", (150, 176, 206)), Colour("grey denim", (120, 124, 130)),
)

SIZE_RUNS: dict[str, tuple[str, ...]] = {
    "letters": ("XXS", "XS", "S", "M", "L", "XL", "XXL", "3XL"),
    "jeans": tuple(f"W{w}/L32" for w in (26, 27, 28, 29, 30, 31, 32, 33, 34, 36)),
    "shoes": tuple(str(size) for size in range(36, 47)),
}

# Model names that only make sense for one garment shape ("501 ORIGINAL - Jeans Straight Leg").
SHAPE_MODELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("levis", "trousers"): ("501 ORIGINAL", "511 SLIM", "502 TAPER", "RIBCAGE", "724 HIGH RISE"),
    ("levis", "tshirt"): ("THE PERFECT TEE", "HOUSEMARK TEE"),
    ("levis", "jacket"): ("TRUCKER", "SHERPA TRUCKER"),
    ("adidas-originals", "shoes"): ("GAZELLE", "SAMBA", "SUPERSTAR"),
}

SKU_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def cents(price: str) -> int:
    euros, _, rest = price.partition(".")
    return int(euros) * 100 + int(rest or 0)


def price_text(amount: int) -> str:
    """Cents to the price string of JSON-LD offers: 3499 -> "34.99"."""
    return f"{amount // 100}.{amount % 100:02d}"


def format_eur(price: str) -> str:
    """A price string as the de-DE page prints it: "119.95" -> "119,95 €"."""
    return f"{price.replace('.', ',')} €"


def seeded(seed: int, *parts: object) -> random.Random:
    """A private generator for one piece of the catalogue; string seeds hash the same in every process."""
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def image_id(seed: int, sku: str, position: int, photo: str | None = None) -> str:
    """A photo's image has another id (so another URL) than the drawing in its slot: caches and labels keyed by
    URL never mix a drawing with a photo, or one photo with another."""
    key = f"{seed}:{sku}:{position}" + (f":{photo}" if photo is not None else "")
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def new_sku(rng: random.Random, brand: Brand, taken: set[str]) -> str:
    while True:
        middle = "".join(rng.choice(SKU_ALPHABET) for _ in range(6))
        suffix = "".join(rng.choice(SKU_ALPHABET) for _ in range(3))
        sku = f"{brand.code}{middle}-{suffix}"
        if sku not in taken:
            taken.add(sku)
            return sku


def sale_price(old: int, discount: float) -> int:
    """A reduced price ending in .99, always below the old one (prices start well above 5 €)."""
    return int(old * (1 - discount)) // 100 * 100 + 99


def make_offers(rng: random.Random, sku: str, garment: GarmentType) -> tuple[Offer, ...]:
    run = SIZE_RUNS[garment.sizes]
    count = rng.randint(3, min(8, len(run)))
    start = rng.randint(0, len(run) - count)
    base = rng.randint(*garment.price_range) * 100 + rng.choice((95, 99, 0))
    discount = rng.choice((0.2, 0.3, 0.4, 0.5)) if rng.random() < 0.25 else 0.0
    # A few products cost more in the larger sizes, so the item's price (the lowest) differs from some offers.
    size_surcharge = 500 if rng.random() < 0.07 else 0
    offers = []
    for index, size in enumerate(run[start : start + count]):
        old = base + (size_surcharge if index >= count // 2 else 0)
        current = sale_price(old, discount) if discount else old
        offers.append(
            Offer(
                size=size,
                sku=f"{sku}{(start + index + 1) * 1000:07d}",
                price=price_text(current),
                old_price=price_text(old) if discount else None,
                in_stock=rng.random() > 0.15,
            )
        )
    return tuple(offers)


def image_kinds(rng: random.Random) -> list[str]:
    """2-6 kinds; most products have one packshot, the rest are mostly worn (about half of all images)."""
    count = rng.randint(2, 6)
    others = rng.choices(("worn", "flatlay", "detail"), weights=(62, 19, 19), k=count)
    if rng.random() < 0.85:
        # Zalando puts the packshot first or last.
        if rng.random() < 0.4:
            others[0] = "packshot"
        else:
            others[-1] = "packshot"
    return others


def make_images(rng: random.Random, seed: int, sku: str, shape: str, colour: Colour) -> tuple[Image, ...]:
    return tuple(
        Image(id=image_id(seed, sku, position), position=position, kind=kind, shape=shape, rgb=colour.rgb)
        for position, kind in enumerate(image_kinds(rng))
    )


def product_name(rng: random.Random, brand: Brand, garment: GarmentType) -> str:
    models = SHAPE_MODELS.get((brand.path, garment.shape), brand.models)
    if models and rng.random() < 0.7:
        return f"{rng.choice(models)} - {garment.name}"
    return garment.name


def make_product(rng: random.Random, seed: int, brand: Brand, index: int, taken: set[str]) -> Product:
    category = rng.choice(brand.categories)
    garment = rng.choice([g for g in GARMENTS if category in g.categories])
    colour = rng.choice(DENIM_COLOURS if garment.denim else COLOURS)
    name = product_name(rng, brand, garment)
    sku = new_sku(rng, brand, taken)
    offers = make_offers(rng, sku, garment)
    images = make_images(rng, seed, sku, garment.shape, colour)
    image_defect = IMAGE_DEFECT_PLACES.get((brand.path, index))
    if image_defect:
        images = (images[0], replace(images[1], defect=image_defect), *images[2:])
    page_defect = PAGE_DEFECT_PLACES.get((brand.path, index))
    return Product(
        sku=sku,
        name=name,
        brand=brand,
        category=category,
        colour=colour.name,
        offers=offers,
        images=images,
        page_defect=page_defect,
        brand_in_h1=rng.random() < 0.2,
        # Defect pages keep the plain shape so each shows one problem only.
        jsonld_shape="object" if page_defect else rng.choices(JSONLD_SHAPES, weights=(70, 15, 15))[0],
    )


class PhotoDeck:
    """One class folder's photos, dealt from seeded shuffles: all of them once, then all again in a new order."""

    def __init__(self, rng: random.Random, photos: tuple[Photo, ...]) -> None:
        self.rng = rng
        self.photos = photos
        self.pile: list[Photo] = []

    def deal(self, avoid: set[Photo]) -> Photo:
        """The next photo, not one in avoid (the product's own gallery) while the folder has others."""
        if not self.pile:
            self.pile = list(self.photos)
            self.rng.shuffle(self.pile)
        for index in range(len(self.pile) - 1, -1, -1):
            if self.pile[index] not in avoid:
                return self.pile.pop(index)
        others = [photo for photo in self.photos if photo not in avoid]
        return self.rng.choice(others) if others else self.pile.pop()


def with_photos(products: list[Product], seed: int, photos: PhotoSet) -> list[Product]:
    """Every image slot gets a photo of its truth: worn slots a worn photo, the others a not_worn one."""
    decks = {label: PhotoDeck(seeded(seed, "photos", label), photos.of(label)) for label in ("worn", "not_worn")}
    out = []
    for product in products:
        gallery: set[Photo] = set()
        images = []
        for image in product.images:
            photo = decks[image.truth].deal(gallery)
            gallery.add(photo)
            images.append(replace(image, photo=photo, id=image_id(seed, product.sku, image.position, photo.path)))
        out.append(replace(product, images=tuple(images)))
    return out


def build_catalogue(seed: int = 42, photos: PhotoSet | None = None) -> Catalogue:
    """The whole shop for a seed (and photos); equal on every call (no global random state, no clock)."""
    taken: set[str] = set()
    products: list[Product] = []
    for brand in BRANDS:
        rng = seeded(seed, "brand", brand.path)
        # 36-60 products: two or three listing pages of 24.
        products.extend(make_product(rng, seed, brand, index, taken) for index in range(rng.randint(36, 60)))
    if photos is not None:
        products = with_photos(products, seed, photos)
    return Catalogue(seed=seed, brands=BRANDS, products=tuple(products), photos=photos)


@lru_cache(maxsize=8)
def catalogue_for(seed: int, photos: PhotoSet | None = None) -> Catalogue:
    """The shared catalogue of a server or a truth file; built once per seed and photo set."""
    return build_catalogue(seed, photos)


def image_url(base_url: str, image: Image, width: int = 1800) -> str:
    """The one place image URLs are made: JSON-LD, gallery, cards and truth all agree."""
    query = f"imwidth={width}" + ("&filter=packshot" if image.is_packshot else "")
    return f"{base_url.rstrip('/')}/img/article/{image.id}.jpg?{query}"


def product_url(base_url: str, product: Product) -> str:
    return base_url.rstrip("/") + product.path


TRUTH_COLUMNS = (
    "image_url", "item_id", "sku", "brand", "brand_path", "product_url", "position",
    "kind", "truth", "is_packshot", "defect", "page_defect", "photo",
)


def truth_rows(catalogue: Catalogue, base_url: str) -> list[dict]:
    """The kept truth of every image; image_url is exactly the URL of the JSON-LD and the gallery."""
    return [
        {
            "image_url": image_url(base_url, image),
            "item_id": product.item_id,
            "sku": product.sku,
            "brand": product.brand.name,
            "brand_path": product.brand.path,
            "product_url": product_url(base_url, product),
            "position": image.position,
            "kind": image.kind,
            "truth": image.truth,
            "is_packshot": image.is_packshot,
            "defect": image.defect or "",
            "page_defect": product.page_defect or "",
            "photo": image.photo.path if image.photo else "",  # the source photo under --photos DIR
        }
        for product in catalogue.products
        for image in product.images
    ]


def truth_csv(catalogue: Catalogue, base_url: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(truth_rows(catalogue, base_url))
    return buffer.getvalue()


def write_truth_csv(path: str | Path, base_url: str, seed: int = 42, photos: PhotoSet | None = None) -> int:
    """Write the truth file for the shop served at base_url; returns the number of image rows."""
    catalogue = catalogue_for(seed, photos)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(truth_csv(catalogue, base_url), encoding="utf-8")
    return sum(len(product.images) for product in catalogue.products)

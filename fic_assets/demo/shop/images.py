"""Product images drawn with Pillow: deterministic per image id, a few milliseconds each.

Four kinds, matching the kept truth: `worn` (the garment on a person-like figure in a scene), `packshot`
(the garment alone on white), `flatlay` (the garment from above on a textured surface) and `detail` (a
close-up of the fabric). Broken images (catalogue.IMAGE_DEFECTS) are produced here as well, so the server
only maps an image id to bytes.

An image with a real photo (`--photos DIR`) is served as the photo file's own bytes, read at request time, under
the Content-Type of the format Pillow finds in them, at every imwidth (EXIF rotation and all: turning it upright
is the client's job, as with a real shop). Its broken variants are made from the photo.
"""

from __future__ import annotations

import io
import math
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image as PILImage
from PIL import ImageDraw, ImageOps

from fic_assets.demo.shop.catalogue import Image

WIDTH, HEIGHT = 420, 560
MIN_WIDTH = 48
JPEG = "image/jpeg"
PNG = "image/png"
# 14000 x 14000 = 196 million pixels: above twice Pillow's MAX_IMAGE_PIXELS (89.5 M), so Image.open raises
# DecompressionBombError instead of only warning.
HUGE_SIZE = (14000, 14000)
HTML_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Service Unavailable</h1><p>The image service is busy. Please try again later.</p></body></html>"
)

Point = tuple[float, float]
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ImageBytes:
    content_type: str
    body: bytes


# Garment outlines in a unit box (x right, y down), fitted into a pixel box when drawn.
def _shoe(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    unit = [(0.0, 0.55), (0.06, 0.12), (0.3, 0.08), (0.42, 0.38), (0.9, 0.5), (1.0, 0.75), (0.98, 0.9), (0.0, 0.9)]
    return [(x0 + x * (x1 - x0), y0 + y * (y1 - y0)) for x, y in unit]


OUTLINES: dict[str, list[list[Point]]] = {
    "tshirt": [[(0.38, 0.0), (0.5, 0.07), (0.62, 0.0), (0.85, 0.08), (1.0, 0.3), (0.82, 0.38), (0.78, 0.28),
                (0.78, 1.0), (0.22, 1.0), (0.22, 0.28), (0.18, 0.38), (0.0, 0.3), (0.15, 0.08)]],
    "longsleeve": [[(0.38, 0.0), (0.5, 0.07), (0.62, 0.0), (0.82, 0.06), (1.0, 0.9), (0.88, 0.93), (0.76, 0.35),
                    (0.76, 1.0), (0.24, 1.0), (0.24, 0.35), (0.12, 0.93), (0.0, 0.9), (0.18, 0.06)]],
    "jacket": [[(0.36, 0.0), (0.5, 0.05), (0.64, 0.0), (0.84, 0.06), (1.0, 0.92), (0.87, 0.95), (0.78, 0.38),
                (0.8, 1.0), (0.2, 1.0), (0.22, 0.38), (0.13, 0.95), (0.0, 0.92), (0.16, 0.06)]],
    "trousers": [[(0.12, 0.0), (0.88, 0.0), (0.98, 1.0), (0.58, 1.0), (0.5, 0.28), (0.42, 1.0), (0.02, 1.0)]],
    "dress": [[(0.34, 0.0), (0.42, 0.0), (0.5, 0.08), (0.58, 0.0), (0.66, 0.0), (0.7, 0.36), (0.98, 1.0),
               (0.02, 1.0), (0.3, 0.36)]],
    "skirt": [[(0.24, 0.0), (0.76, 0.0), (0.98, 1.0), (0.02, 1.0)]],
    "shoes": [_shoe(0.0, 0.0, 0.62, 0.92), _shoe(0.38, 0.08, 1.0, 1.0)],
}
# Seams, plackets and waistbands drawn over the outline in a darker shade.
SEAMS: dict[str, list[list[Point]]] = {
    "tshirt": [[(0.38, 0.0), (0.5, 0.1), (0.62, 0.0)], [(0.22, 0.95), (0.78, 0.95)]],
    "longsleeve": [[(0.38, 0.0), (0.5, 0.1), (0.62, 0.0)], [(0.24, 0.94), (0.76, 0.94)]],
    "jacket": [[(0.5, 0.05), (0.5, 1.0)], [(0.36, 0.0), (0.5, 0.4), (0.64, 0.0)], [(0.3, 0.6), (0.42, 0.6)]],
    "trousers": [[(0.12, 0.06), (0.88, 0.06)], [(0.5, 0.06), (0.5, 0.26)]],
    "dress": [[(0.3, 0.36), (0.7, 0.36)]],
    "skirt": [[(0.23, 0.07), (0.77, 0.07)]],
    "shoes": [[(0.2, 0.2), (0.3, 0.4)], [(0.55, 0.3), (0.66, 0.46)]],
}
ASPECT: dict[str, float] = {  # width / height of the garment box
    "tshirt": 1.0, "longsleeve": 0.95, "jacket": 0.9, "trousers": 0.55, "dress": 0.62, "skirt": 1.0, "shoes": 1.8,
}

SKIN_TONES: tuple[RGB, ...] = ((245, 215, 190), (232, 190, 160), (205, 160, 120), (170, 120, 85), (120, 82, 58),
                               (88, 60, 44))
HAIR: tuple[RGB, ...] = ((30, 24, 20), (80, 52, 30), (150, 110, 60), (210, 180, 120), (120, 120, 118))
NEUTRALS: tuple[RGB, ...] = ((240, 240, 236), (40, 40, 44), (120, 122, 126), (58, 86, 136), (190, 176, 150))
SCENE_COLOURS: tuple[RGB, ...] = ((222, 222, 218), (226, 214, 196), (198, 214, 226), (196, 210, 190),
                                  (214, 160, 130), (160, 170, 186), (232, 206, 206), (120, 130, 140))
SURFACES: tuple[RGB, ...] = ((168, 122, 80), (214, 198, 170), (190, 190, 186), (236, 200, 180), (170, 196, 210),
                             (96, 96, 100))


def shade(rgb: Sequence[int], factor: float) -> RGB:
    r, g, b = (max(0, min(255, round(channel * factor))) for channel in rgb)
    return r, g, b


def jitter(rng: random.Random, rgb: Sequence[int], spread: float = 0.08) -> RGB:
    """The same colour under slightly different light, so no two photos share exact pixels."""
    return shade(rgb, 1 + rng.uniform(-spread, spread))


def fit(points: Sequence[Point], box: tuple[float, float, float, float], angle: float = 0.0) -> list[Point]:
    """Unit-box points into a pixel box, turned by angle degrees around the box centre."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    placed = []
    for u, v in points:
        x, y = x0 + u * (x1 - x0) - cx, y0 + v * (y1 - y0) - cy
        placed.append((cx + x * cos - y * sin, cy + x * sin + y * cos))
    return placed


def garment_box(shape: str, centre: Point, max_w: float, max_h: float) -> tuple[float, float, float, float]:
    width = min(max_w, max_h * ASPECT[shape])
    height = width / ASPECT[shape]
    return centre[0] - width / 2, centre[1] - height / 2, centre[0] + width / 2, centre[1] + height / 2


def paint_garment(draw: ImageDraw.ImageDraw, shape: str, rgb: RGB, box: tuple[float, float, float, float],
                  angle: float = 0.0) -> None:
    line_width = max(2, round((box[2] - box[0]) / 90))
    for outline in OUTLINES[shape]:
        draw.polygon(fit(outline, box, angle), fill=rgb, outline=shade(rgb, 0.7), width=line_width)
    for seam in SEAMS[shape]:
        draw.line(fit(seam, box, angle), fill=shade(rgb, 0.75), width=line_width)


def limb(draw: ImageDraw.ImageDraw, points: Sequence[Point], width: float, fill: RGB) -> None:
    """A thick polyline with rounded joints and ends: arms, legs, sleeves."""
    draw.line(list(points), fill=fill, width=round(width))
    radius = width / 2
    for x, y in points:
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)


def towards(start: Point, angle: float, length: float) -> Point:
    """The point length away from start, angle degrees from straight down (positive: to the right)."""
    return start[0] + length * math.sin(math.radians(angle)), start[1] + length * math.cos(math.radians(angle))


def along(points: Sequence[Point], fraction: float) -> list[Point]:
    """The first fraction of a two-segment limb (how far a sleeve reaches down the arm)."""
    (ax, ay), (bx, by), (cx, cy) = points
    if fraction <= 0.5:
        t = fraction * 2
        return [(ax, ay), (ax + (bx - ax) * t, ay + (by - ay) * t)]
    t = (fraction - 0.5) * 2
    return [(ax, ay), (bx, by), (bx + (cx - bx) * t, by + (cy - by) * t)]


# --- scenes -------------------------------------------------------------------------------------------

def vertical_gradient(draw: ImageDraw.ImageDraw, top: RGB, bottom: RGB, y0: int, y1: int) -> None:
    for y in range(y0, y1):
        t = (y - y0) / max(1, y1 - y0 - 1)
        draw.line([(0, y), (WIDTH, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))


def paint_scene(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    """A non-white background: studio, room, street or outdoors."""
    scene = rng.choice(("studio", "room", "bricks", "outdoor"))
    wall = jitter(rng, rng.choice(SCENE_COLOURS))
    horizon = rng.randint(int(HEIGHT * 0.6), int(HEIGHT * 0.8))
    if scene == "studio":
        vertical_gradient(draw, wall, shade(wall, 0.82), 0, HEIGHT)
    elif scene == "room":
        draw.rectangle((0, 0, WIDTH, horizon), fill=wall)
        draw.rectangle((0, horizon, WIDTH, HEIGHT), fill=jitter(rng, rng.choice(SURFACES)))
        frame_x = rng.randint(10, WIDTH - 130)
        draw.rectangle((frame_x, 60, frame_x + 110, 200), fill=shade(wall, 0.85), outline=shade(wall, 0.6), width=4)
    elif scene == "bricks":
        brick = jitter(rng, (160, 80, 60), 0.15)
        draw.rectangle((0, 0, WIDTH, HEIGHT), fill=shade(brick, 0.75))
        for row, y in enumerate(range(0, horizon, 22)):
            for x in range(-40 if row % 2 else -10, WIDTH, 60):
                draw.rectangle((x, y, x + 54, y + 18), fill=jitter(rng, brick, 0.1))
        draw.rectangle((0, horizon, WIDTH, HEIGHT), fill=jitter(rng, (130, 130, 128)))
    else:
        vertical_gradient(draw, jitter(rng, (120, 170, 225)), jitter(rng, (205, 225, 240)), 0, horizon)
        draw.rectangle((0, horizon, WIDTH, HEIGHT), fill=jitter(rng, rng.choice(((90, 140, 70), (150, 150, 146)))))
        for _ in range(rng.randint(1, 3)):
            x = rng.randint(0, WIDTH)
            draw.rectangle((x - 6, horizon - 90, x + 6, horizon), fill=(90, 64, 40))
            draw.ellipse((x - 45, horizon - 170, x + 45, horizon - 70), fill=jitter(rng, (60, 110, 50), 0.15))


def paint_surface(draw: ImageDraw.ImageDraw, rng: random.Random) -> RGB:
    """A flat-lay surface seen from above: wood grain, linen, paper or concrete."""
    surface = jitter(rng, rng.choice(SURFACES))
    draw.rectangle((0, 0, WIDTH, HEIGHT), fill=surface)
    texture = rng.choice(("grain", "weave", "speckle", "plain"))
    if texture == "grain":
        for y in range(0, HEIGHT, 7):
            draw.line([(0, y + rng.randint(-2, 2)), (WIDTH, y + rng.randint(-3, 3))], fill=jitter(rng, surface, 0.12))
    elif texture == "weave":
        for offset in range(0, max(WIDTH, HEIGHT), 5):
            draw.line([(offset, 0), (offset, HEIGHT)], fill=shade(surface, 0.95))
            draw.line([(0, offset), (WIDTH, offset)], fill=shade(surface, 1.04))
    elif texture == "speckle":
        for _ in range(500):
            x, y = rng.randrange(WIDTH), rng.randrange(HEIGHT)
            draw.point((x, y), fill=jitter(rng, surface, 0.25))
    return surface


def paint_props(draw: ImageDraw.ImageDraw, rng: random.Random) -> None:
    """Sunglasses, a watch or a leaf in the corners, as stylists add them to flat lays."""
    corners = [(60, 60), (WIDTH - 60, 60), (60, HEIGHT - 60), (WIDTH - 60, HEIGHT - 60)]
    for x, y in rng.sample(corners, rng.randint(1, 2)):
        prop = rng.choice(("glasses", "watch", "leaf"))
        if prop == "glasses":
            for dx in (-20, 20):
                draw.ellipse((x + dx - 16, y - 12, x + dx + 16, y + 12), fill=(40, 40, 44), outline=(10, 10, 10), width=3)
        elif prop == "watch":
            draw.rectangle((x - 8, y - 40, x + 8, y + 40), fill=(90, 60, 40))
            draw.ellipse((x - 20, y - 20, x + 20, y + 20), fill=(220, 220, 224), outline=(120, 120, 120), width=4)
        else:
            draw.ellipse((x - 40, y - 14, x + 40, y + 14), fill=jitter(rng, (70, 130, 60), 0.2))


# --- the four kinds -----------------------------------------------------------------------------------

def draw_packshot(rng: random.Random, image: Image) -> PILImage.Image:
    """The garment alone, centred on white."""
    canvas = PILImage.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    box = garment_box(image.shape, (WIDTH / 2, HEIGHT / 2), WIDTH * 0.8, HEIGHT * rng.uniform(0.62, 0.75))
    paint_garment(ImageDraw.Draw(canvas), image.shape, jitter(rng, image.rgb, 0.03), box)
    return canvas


def draw_flatlay(rng: random.Random, image: Image) -> PILImage.Image:
    """The garment from above on a surface, a little turned, with its shadow and a prop or two."""
    canvas = PILImage.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(canvas)
    surface = paint_surface(draw, rng)
    centre = (WIDTH / 2 + rng.uniform(-30, 30), HEIGHT / 2 + rng.uniform(-30, 30))
    box = garment_box(image.shape, centre, WIDTH * 0.78, HEIGHT * rng.uniform(0.55, 0.72))
    angle = rng.uniform(-18, 18)
    shadow = (box[0] + 6, box[1] + 6, box[2] + 6, box[3] + 6)
    for outline in OUTLINES[image.shape]:
        draw.polygon(fit(outline, shadow, angle), fill=shade(surface, 0.8))
    paint_garment(draw, image.shape, jitter(rng, image.rgb), box, angle)
    paint_props(draw, rng)
    return canvas


def draw_detail(rng: random.Random, image: Image) -> PILImage.Image:
    """A close-up of the fabric: weave, a seam with stitches and a button or a rivet."""
    base = jitter(rng, image.rgb)
    canvas = PILImage.new("RGB", (WIDTH, HEIGHT), base)
    draw = ImageDraw.Draw(canvas)
    step = rng.randint(4, 9)
    weave = rng.choice(("twill", "knit", "grid"))
    for offset in range(-HEIGHT, WIDTH + HEIGHT, step):
        if weave == "twill":
            draw.line([(offset, 0), (offset + HEIGHT, HEIGHT)], fill=shade(base, 0.85), width=2)
        elif weave == "knit":
            for y in range(0, HEIGHT, step * 2):
                draw.line([(offset, y), (offset + step / 2, y + step), (offset + step, y)], fill=shade(base, 0.8))
            if offset > WIDTH:
                break
        else:
            draw.line([(offset, 0), (offset, HEIGHT)], fill=shade(base, 0.9))
            draw.line([(0, offset), (WIDTH, offset)], fill=shade(base, 1.08))
    seam_y = rng.randint(HEIGHT // 4, HEIGHT * 3 // 4)
    thread = rng.choice(((214, 140, 40), shade(base, 0.6), (240, 240, 236)))
    for x in range(0, WIDTH, 18):
        draw.line([(x, seam_y), (x + 10, seam_y)], fill=thread, width=3)
        draw.line([(x, seam_y + 14), (x + 10, seam_y + 14)], fill=thread, width=3)
    bx, by = rng.randint(80, WIDTH - 80), rng.randint(80, HEIGHT - 80)
    radius = rng.randint(22, 40)
    draw.ellipse((bx - radius, by - radius, bx + radius, by + radius), fill=rng.choice(((180, 150, 90), (30, 30, 30))))
    return canvas


@dataclass(frozen=True)
class Pose:
    u: float  # a tenth of the full figure's height, in pixels
    cx: float
    top: float  # y of the head's top; negative when the photo crops the head
    arms: tuple[tuple[float, float], tuple[float, float]]  # (upper arm, forearm) angles from down, left and right
    spread: float  # how far the feet stand apart
    skin: RGB
    hair: RGB


def random_pose(rng: random.Random, shape: str) -> Pose:
    u = HEIGHT / 10 * rng.uniform(0.85, 1.2)
    top = rng.uniform(0.01, 0.08) * HEIGHT
    if shape == "shoes" and rng.random() < 0.5:
        # Zoomed in on the legs: the feet (8.65 u below the head's top) stand near the bottom edge.
        u = HEIGHT / 10 * rng.uniform(1.8, 2.4)
        top = HEIGHT - 9.1 * u
    elif rng.random() < 0.25:
        top = -rng.uniform(0.3, 0.9) * u  # crop through the face, as shops do
    def arm() -> tuple[float, float]:
        upper = rng.uniform(6, 30)
        return (upper, upper - 55) if rng.random() < 0.3 else (upper, upper + rng.uniform(-8, 8))
    left, right = arm(), arm()
    return Pose(
        u=u,
        cx=WIDTH / 2 + rng.uniform(-0.12, 0.12) * WIDTH,
        top=top,
        arms=((-left[0], -left[1]), right),
        spread=rng.uniform(0.0, 0.6) * u,
        skin=rng.choice(SKIN_TONES),
        hair=rng.choice(HAIR),
    )


def draw_worn(rng: random.Random, image: Image) -> PILImage.Image:
    """The garment on a person-like figure in a scene: pose, skin tone, scale and crop vary."""
    canvas = PILImage.new("RGB", (WIDTH, HEIGHT))
    draw = ImageDraw.Draw(canvas)
    paint_scene(draw, rng)
    pose = random_pose(rng, image.shape)
    garment = jitter(rng, image.rgb)
    other_top, other_bottom = jitter(rng, rng.choice(NEUTRALS)), jitter(rng, rng.choice(NEUTRALS))
    top_colour = garment if image.shape in ("tshirt", "longsleeve", "jacket", "dress") else other_top
    u, cx = pose.u, pose.cx
    shoulder_y = pose.top + 1.35 * u
    hip_y = shoulder_y + 2.9 * u
    feet = [(cx - 0.33 * u - pose.spread, hip_y + 4.4 * u), (cx + 0.33 * u + pose.spread, hip_y + 4.4 * u)]
    legs = [[(cx - 0.33 * u, hip_y), feet[0]], [(cx + 0.33 * u, hip_y), feet[1]]]

    # Legs: the garment when it is trousers, bare under a dress or skirt, neutral trousers otherwise.
    bare_legs = image.shape in ("dress", "skirt")
    leg_colour = garment if image.shape == "trousers" else pose.skin if bare_legs else other_bottom
    for leg in legs:
        limb(draw, leg, 0.58 * u, leg_colour)
    shoe_colour = garment if image.shape == "shoes" else (30, 30, 32)
    shoe_size = 1.4 if image.shape == "shoes" else 1.0
    for (fx, fy), side in zip(feet, (-1, 1)):
        draw.ellipse((fx - 0.2 * u + min(0, side) * 0.5 * u * shoe_size, fy - 0.2 * u * shoe_size,
                      fx + 0.2 * u + max(0, side) * 0.5 * u * shoe_size, fy + 0.15 * u * shoe_size), fill=shoe_colour)
    if not bare_legs:
        draw.polygon([(cx - 0.65 * u, hip_y - 0.3 * u), (cx + 0.65 * u, hip_y - 0.3 * u), (cx + 0.62 * u, hip_y + 0.8 * u),
                      (cx - 0.62 * u, hip_y + 0.8 * u)], fill=leg_colour)
    if image.shape == "skirt":
        draw.polygon([(cx - 0.62 * u, hip_y - 0.4 * u), (cx + 0.62 * u, hip_y - 0.4 * u), (cx + 1.0 * u, hip_y + 1.9 * u),
                      (cx - 1.0 * u, hip_y + 1.9 * u)], fill=garment, outline=shade(garment, 0.7), width=3)

    # Neck and torso; a dress continues into a skirt, a jacket hangs lower and stays open.
    draw.rectangle((cx - 0.16 * u, pose.top + 0.9 * u, cx + 0.16 * u, shoulder_y + 0.2 * u), fill=pose.skin)
    hem = hip_y + {"jacket": 0.7, "dress": 0.0}.get(image.shape, 0.25) * u
    draw.polygon([(cx - 0.85 * u, shoulder_y), (cx + 0.85 * u, shoulder_y), (cx + 0.66 * u, hem), (cx - 0.66 * u, hem)],
                 fill=top_colour, outline=shade(top_colour, 0.7), width=3)
    if image.shape == "dress":
        draw.polygon([(cx - 0.66 * u, hip_y - 0.6 * u), (cx + 0.66 * u, hip_y - 0.6 * u), (cx + 1.15 * u, hip_y + 2.2 * u),
                      (cx - 1.15 * u, hip_y + 2.2 * u)], fill=garment, outline=shade(garment, 0.7), width=3)
    if image.shape == "jacket":
        draw.rectangle((cx - 0.14 * u, shoulder_y + 0.1 * u, cx + 0.14 * u, hem), fill=other_top)
        draw.line([(cx - 0.4 * u, shoulder_y), (cx - 0.14 * u, shoulder_y + 1.2 * u)], fill=shade(garment, 0.7), width=4)
        draw.line([(cx + 0.4 * u, shoulder_y), (cx + 0.14 * u, shoulder_y + 1.2 * u)], fill=shade(garment, 0.7), width=4)

    # Arms with their sleeves, then hands, head and hair.
    sleeve = {"tshirt": 0.35, "longsleeve": 0.92, "jacket": 0.95, "dress": 0.0}.get(image.shape, 0.35)
    for side, (upper, fore) in zip((-1, 1), pose.arms):
        shoulder = (cx + side * 0.78 * u, shoulder_y + 0.2 * u)
        elbow = towards(shoulder, upper, 1.45 * u)
        hand = towards(elbow, fore, 1.4 * u)
        limb(draw, [shoulder, elbow, hand], 0.38 * u, pose.skin)
        if sleeve:
            limb(draw, along([shoulder, elbow, hand], sleeve), 0.5 * u, top_colour)
        draw.ellipse((hand[0] - 0.2 * u, hand[1] - 0.2 * u, hand[0] + 0.2 * u, hand[1] + 0.2 * u), fill=pose.skin)
    head = (cx - 0.42 * u, pose.top, cx + 0.42 * u, pose.top + 1.05 * u)
    draw.ellipse(head, fill=pose.skin)
    draw.chord((head[0] - 0.04 * u, head[1] - 0.06 * u, head[2] + 0.04 * u, head[3] - 0.2 * u), 180, 360, fill=pose.hair)
    return canvas


PAINTERS = {"worn": draw_worn, "packshot": draw_packshot, "flatlay": draw_flatlay, "detail": draw_detail}


def draw_image(image: Image) -> PILImage.Image:
    """The picture of an image id at full size (WIDTH x HEIGHT); the same pixels on every call."""
    return PAINTERS[image.kind](random.Random(image.id), image)


def served_width(imwidth: int | None) -> int:
    """Images are drawn at 420 px wide; smaller imwidth values (thumbnails) get a smaller image."""
    return WIDTH if imwidth is None else max(MIN_WIDTH, min(WIDTH, imwidth))


def encode(picture: PILImage.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, quality=85) if fmt == "JPEG" else picture.save(buffer, fmt)
    return buffer.getvalue()


def with_alpha(picture: PILImage.Image) -> PILImage.Image:
    """An RGBA cut-out: opaque in an ellipse, transparent in the corners."""
    mask = PILImage.new("L", picture.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, picture.width - 1, picture.height - 1), fill=255)
    rgba = picture.convert("RGBA")
    rgba.putalpha(mask)
    return rgba


def flat_grey_jpeg(width: int, height: int) -> bytes:
    """A valid baseline greyscale JPEG of one flat mid-grey, written by hand so huge sizes cost no pixels.

    Every 8x8 block has DC difference 0 (grey 128 after the level shift) and no AC coefficients. With Huffman
    tables holding a single one-bit code each ("0": DC category 0, "0": end of block) a block is two zero bits,
    so a 14000 x 14000 image is about 750 kB and is never held in memory as pixels.
    """
    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">HH", marker, len(payload) + 2) + payload

    one_code_table = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1, for symbol 0
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    bits = blocks * 2
    scan = b"\x00" * (bits // 8) + (bytes([0xFF >> (bits % 8)]) if bits % 8 else b"")  # pad the last byte with 1s
    return b"".join((
        b"\xff\xd8",
        segment(0xFFDB, b"\x00" + b"\x01" * 64),
        segment(0xFFC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        segment(0xFFC4, b"\x00" + one_code_table),
        segment(0xFFC4, b"\x10" + one_code_table),
        segment(0xFFDA, b"\x01\x01\x00\x00\x3f\x00"),
        scan,
        b"\xff\xd9",
    ))


# Broken photos are re-encoded at most this wide (the URLs ask for imwidth=1800).
PHOTO_DEFECT_WIDTH = 1800


@lru_cache(maxsize=16)
def broken_photo(image: Image) -> ImageBytes:
    """The cmyk or png_alpha variant of an image's photo, upright, at most PHOTO_DEFECT_WIDTH wide."""
    assert image.photo is not None
    with PILImage.open(image.photo.file) as opened:
        picture = ImageOps.exif_transpose(opened).convert("RGB")
    if picture.width > PHOTO_DEFECT_WIDTH:
        picture = picture.resize((PHOTO_DEFECT_WIDTH, round(PHOTO_DEFECT_WIDTH * picture.height / picture.width)),
                                 PILImage.Resampling.BILINEAR)
    if image.defect == "png_alpha":
        return ImageBytes(PNG, encode(with_alpha(picture), "PNG"))
    return ImageBytes(JPEG, encode(picture.convert("CMYK"), "JPEG"))


def photo_bytes(image: Image) -> ImageBytes:
    """A photo image's response: the file's bytes (not cached: a photo folder can be large), or its defect."""
    assert image.photo is not None
    if image.defect in ("cmyk", "png_alpha"):
        return broken_photo(image)
    data = image.photo.read()
    if image.defect == "truncated":
        data = data[: len(data) * 2 // 5]
    return ImageBytes(image.photo.content_type, data)


def image_bytes(image: Image, width: int = WIDTH) -> ImageBytes | None:
    """What the shop serves for an image at a served width (see served_width); None when it is missing (404)."""
    if image.defect in ("missing", "empty", "html", "huge") or image.photo is None:
        return drawn_bytes(image, width)
    return photo_bytes(image)


@lru_cache(maxsize=2048)
def drawn_bytes(image: Image, width: int = WIDTH) -> ImageBytes | None:
    """A drawn image, or a defect that needs no picture.

    Cached because pages show the same images again and again (cards, thumbnails, recommendations).
    """
    if image.defect == "missing":
        return None
    if image.defect == "empty":
        return ImageBytes(JPEG, b"")
    if image.defect == "html":
        return ImageBytes(JPEG, HTML_ERROR_PAGE)
    if image.defect == "huge":
        return ImageBytes(JPEG, flat_grey_jpeg(*HUGE_SIZE))
    picture = draw_image(image)
    if width != WIDTH:
        picture = picture.resize((width, round(width * HEIGHT / WIDTH)), PILImage.Resampling.BILINEAR)
    if image.defect == "png_alpha":
        return ImageBytes(PNG, encode(with_alpha(picture), "PNG"))
    if image.defect == "cmyk":
        return ImageBytes(JPEG, encode(picture.convert("CMYK"), "JPEG"))
    data = encode(picture, "JPEG")
    if image.defect == "truncated":
        return ImageBytes(JPEG, data[: len(data) * 2 // 5])
    return ImageBytes(JPEG, data)

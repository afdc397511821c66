"""A seeded set of handwritten-looking digit photos and scans, drawn from pen strokes made here (not MNIST).

Each digit is one of several stroke shapes people write (a 7 with or without a bar, an open or a
closed 4, ...), bent by a random slant, rotation, aspect and wobble, and drawn with a pen of
random width. Each drawing is then put on a page the way people hand digits over: pen on paper
photographed under uneven light with noise and JPEG artefacts, coloured pens, chalk on a board,
pencil, thick markers and thin fineliners, small digits in wide margins, and low-resolution scans
enlarged, saved in the file kinds Pillow opens.
"""

import io
import itertools
import math
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]
Stroke = list[Point]


def ellipse(cx: float, cy: float, rx: float, ry: float, start: float = -math.pi / 2, turns: float = 1.05) -> Stroke:
    """Return points along an ellipse, starting at angle start, going round `turns` times."""
    steps = 24
    return [
        (
            cx + rx * math.cos(start + 2 * math.pi * turns * i / steps),
            cy + ry * math.sin(start + 2 * math.pi * turns * i / steps),
        )
        for i in range(steps + 1)
    ]


def figure_eight() -> Stroke:
    """Return an 8 written in one stroke."""
    return [(0.5 + 0.27 * math.sin(2 * t), 0.5 - 0.45 * math.cos(t)) for t in np.linspace(0.15, 2 * math.pi + 0.1, 30)]


SHAPES: dict[int, list[list[Stroke]]] = {
    0: [[ellipse(0.5, 0.5, 0.32, 0.45)], [ellipse(0.5, 0.5, 0.25, 0.46, start=-2.0, turns=1.1)]],
    1: [
        [[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)]],
        [[(0.32, 0.22), (0.55, 0.05), (0.55, 0.95)], [(0.3, 0.95), (0.8, 0.95)]],
    ],
    2: [
        [[(0.2, 0.25), (0.35, 0.07), (0.65, 0.07), (0.8, 0.28), (0.6, 0.55), (0.2, 0.93), (0.85, 0.92)]],
        [[(0.2, 0.2), (0.5, 0.05), (0.78, 0.22), (0.5, 0.65), (0.2, 0.9), (0.35, 0.8), (0.5, 0.92), (0.85, 0.9)]],
    ],
    3: [
        [
            [
                (0.2, 0.15),
                (0.5, 0.05),
                (0.78, 0.2),
                (0.7, 0.42),
                (0.45, 0.5),
                (0.75, 0.58),
                (0.8, 0.8),
                (0.55, 0.95),
                (0.2, 0.85),
            ]
        ],
        [[(0.2, 0.08), (0.8, 0.08), (0.45, 0.42), (0.75, 0.55), (0.8, 0.8), (0.55, 0.95), (0.2, 0.85)]],
    ],
    4: [
        [[(0.6, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.65, 0.35), (0.65, 0.95)]],
        [[(0.25, 0.05), (0.2, 0.55), (0.82, 0.55)], [(0.7, 0.08), (0.7, 0.95)]],
    ],
    5: [
        [[(0.75, 0.07), (0.3, 0.07), (0.25, 0.45), (0.55, 0.4), (0.8, 0.6), (0.75, 0.85), (0.45, 0.95), (0.2, 0.85)]],
        [
            [(0.3, 0.07), (0.25, 0.45), (0.55, 0.4), (0.8, 0.62), (0.72, 0.88), (0.45, 0.95), (0.2, 0.86)],
            [(0.3, 0.07), (0.8, 0.07)],
        ],
    ],
    6: [
        [
            [
                (0.7, 0.05),
                (0.4, 0.25),
                (0.22, 0.6),
                (0.3, 0.9),
                (0.6, 0.93),
                (0.75, 0.72),
                (0.6, 0.52),
                (0.35, 0.55),
                (0.25, 0.7),
            ]
        ],
        [[(0.65, 0.05), (0.3, 0.45), (0.25, 0.8), (0.5, 0.95), (0.72, 0.78), (0.55, 0.55), (0.3, 0.65)]],
    ],
    7: [
        [[(0.15, 0.1), (0.85, 0.1), (0.45, 0.95)]],
        [[(0.15, 0.12), (0.85, 0.1), (0.45, 0.95)], [(0.35, 0.52), (0.78, 0.5)]],
        [[(0.15, 0.2), (0.2, 0.1), (0.85, 0.1), (0.6, 0.5), (0.5, 0.95)]],
    ],
    8: [[figure_eight()]],
    9: [
        [[(0.75, 0.3), (0.5, 0.08), (0.25, 0.25), (0.35, 0.45), (0.65, 0.42), (0.75, 0.3), (0.72, 0.6), (0.65, 0.95)]],
        [[*ellipse(0.5, 0.28, 0.25, 0.22, start=0.0), (0.75, 0.3), (0.75, 0.95)]],
    ],
}


def smooth(points: Stroke, samples: int = 12) -> Stroke:
    """Return a Catmull-Rom curve through points."""
    if len(points) < 3:
        return [
            (a[0] + (b[0] - a[0]) * t / samples, a[1] + (b[1] - a[1]) * t / samples)
            for a, b in itertools.pairwise(points)
            for t in range(samples + 1)
        ]
    padded = [points[0], *points, points[-1]]
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        for step in range(samples):
            t = step / samples
            curve.append(
                tuple(
                    0.5
                    * (
                        2 * p1[i]
                        + (-p0[i] + p2[i]) * t
                        + (2 * p0[i] - 5 * p1[i] + 4 * p2[i] - p3[i]) * t**2
                        + (-p0[i] + 3 * p1[i] - 3 * p2[i] + p3[i]) * t**3
                    )
                    for i in range(2)
                )
            )
    curve.append(points[-1])
    return curve


def written_digit(digit: int, rng: random.Random) -> list[Stroke]:
    """Return the strokes of one digit as a person might write it, in a unit box."""
    shape = rng.choice(SHAPES[digit])
    slant, angle = rng.uniform(-0.35, 0.25), rng.uniform(-0.18, 0.18)
    aspect = rng.uniform(0.65, 1.1)
    wobble = rng.uniform(0.0, 0.035)
    cos, sin = math.cos(angle), math.sin(angle)
    strokes = []
    for stroke in shape:
        moved = []
        for x, y in stroke:
            x, y = x + rng.gauss(0, wobble), y + rng.gauss(0, wobble)
            x, y = 0.5 + (x - 0.5) * aspect - slant * (y - 0.5), y
            moved.append((0.5 + cos * (x - 0.5) - sin * (y - 0.5), 0.5 + sin * (x - 0.5) + cos * (y - 0.5)))
        strokes.append(smooth(moved))
    return strokes


def ink_mask(
    strokes: list[Stroke], size: tuple[int, int], box: tuple[float, float, float, float], width: float
) -> Image.Image:
    """Return an 'L' mask of strokes drawn with a round pen of width pixels, the unit box mapped onto box."""
    scale = 4 if max(size) <= 400 else 2
    mask = Image.new("L", (size[0] * scale, size[1] * scale), 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = box
    radius = max(0.5, width * scale / 2)
    for stroke in strokes:
        points = [((left + x * (right - left)) * scale, (top + y * (bottom - top)) * scale) for x, y in stroke]
        draw.line(points, fill=255, width=max(1, round(2 * radius)))
        for px, py in points:
            draw.ellipse([px - radius, py - radius, px + radius, py + radius], fill=255)
    return mask.resize(size, Image.Resampling.BOX)


def lighting(size: tuple[int, int], rng: random.Random, strength: float) -> np.ndarray:
    """Return a smooth (H, W) field of light in (0, 1]: a gradient from one side and a soft shadow."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs / width - 0.5) * math.cos(angle) + (ys / height - 0.5) * math.sin(angle)
    cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.3, 0.8) * max(size)
    shadow = np.exp(-(((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r**2)))
    light = 1 - strength * (0.5 + ramp) - 0.6 * strength * shadow * rng.random()
    return np.clip(light, 0.15, 1.0)


def noise_field(size: tuple[int, int], rng: random.Random) -> np.ndarray:
    """Return (H, W) standard Gaussian noise, tiled from a random 128x128 patch (fast for large pages)."""
    patch = np.random.default_rng(rng.randrange(2**32)).standard_normal((128, 128), np.float32)
    width, height = size
    return np.tile(patch, (height // 128 + 1, width // 128 + 1))[:height, :width]


def page(
    mask: Image.Image,
    paper: tuple[int, int, int],
    ink: tuple[int, int, int],
    rng: random.Random,
    light: float,
    noise: float,
    texture: float = 0.0,
) -> Image.Image:
    """Return an RGB photo of ink on paper through mask, under uneven light, with sensor noise and ink texture."""
    alpha = np.asarray(mask, dtype=np.float32)[..., None] / 255
    if texture:
        grain = Image.fromarray(np.clip(128 + 60 * noise_field(mask.size, rng), 0, 255).astype(np.uint8))
        grain = np.asarray(grain.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32)
        alpha = alpha * np.clip(1 - texture * (grain[..., None] / 255 + 0.1 * rng.random()), 0, 1) ** 1.5
    colour = np.array(paper, np.float32) * (1 - alpha) + np.array(ink, np.float32) * alpha
    shaded = colour * lighting(mask.size, rng, light)[..., None]
    shaded += (noise * 255) * noise_field(mask.size, rng)[..., None]
    return Image.fromarray(np.clip(shaded, 0, 255).astype(np.uint8), "RGB")


def digit_box(size: tuple[int, int], rng: random.Random, fill: float) -> tuple[float, float, float, float]:
    """Return a box for the digit that fills about `fill` of the page's height, placed at random."""
    width, height = size
    box_height = fill * height
    box_width = box_height * rng.uniform(0.7, 0.9)
    left = rng.uniform(0.05 * width, width - box_width - 0.05 * width)
    top = rng.uniform(0.05 * height, height - box_height - 0.05 * height)
    return left, top, left + box_width, top + box_height


def pen_photo(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """Pen on white or off-white paper, photographed under uneven light."""
    size = (rng.randrange(300, 900), rng.randrange(300, 900))
    box = digit_box(size, rng, rng.uniform(0.35, 0.7))
    width = (box[3] - box[1]) * rng.uniform(0.03, 0.08)
    ink = rng.choice([(20, 20, 30), (25, 35, 110), (10, 10, 10)])
    paper = (rng.randrange(215, 256), rng.randrange(210, 250), rng.randrange(190, 240))
    return page(ink_mask(strokes, size, box, width), paper, ink, rng, rng.uniform(0.2, 0.6), rng.uniform(0.01, 0.05))


def coloured_pen(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """Red, green, blue or purple pen on white or tinted paper."""
    size = (rng.randrange(200, 600), rng.randrange(200, 600))
    box = digit_box(size, rng, rng.uniform(0.4, 0.75))
    width = (box[3] - box[1]) * rng.uniform(0.04, 0.1)
    ink = rng.choice([(200, 30, 40), (30, 140, 50), (40, 80, 220), (120, 40, 160), (230, 120, 20)])
    paper = rng.choice([(250, 250, 250), (255, 250, 215), (225, 240, 255), (240, 240, 235)])
    return page(ink_mask(strokes, size, box, width), paper, ink, rng, rng.uniform(0.0, 0.3), rng.uniform(0.0, 0.03))


def chalk(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """White or yellow chalk on a dark green or black board: light on dark, grainy strokes."""
    size = (rng.randrange(300, 800), rng.randrange(300, 700))
    box = digit_box(size, rng, rng.uniform(0.4, 0.7))
    width = (box[3] - box[1]) * rng.uniform(0.05, 0.1)
    board = rng.choice([(30, 60, 45), (25, 28, 30), (40, 45, 50)])
    ink = rng.choice([(235, 235, 230), (240, 230, 150)])
    return page(ink_mask(strokes, size, box, width), board, ink, rng, rng.uniform(0.1, 0.4), 0.03, texture=0.9)


def pencil(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """Soft grey pencil, thin and grainy, on white paper in dim light."""
    size = (rng.randrange(250, 700), rng.randrange(250, 700))
    box = digit_box(size, rng, rng.uniform(0.4, 0.7))
    width = (box[3] - box[1]) * rng.uniform(0.02, 0.05)
    grey = rng.randrange(70, 130)
    return page(ink_mask(strokes, size, box, width), (245, 245, 240), (grey, grey, grey + 5), rng, 0.3, 0.02, 0.5)


def marker_or_fineliner(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """A thick felt marker or a hair-thin fineliner on white paper."""
    size = (rng.randrange(200, 700), rng.randrange(200, 700))
    box = digit_box(size, rng, rng.uniform(0.4, 0.8))
    thickness = rng.choice([rng.uniform(0.12, 0.18), rng.uniform(0.008, 0.02)])
    width = max(1.0, (box[3] - box[1]) * thickness)
    return page(ink_mask(strokes, size, box, width), (250, 250, 250), (15, 15, 15), rng, 0.1, 0.01)


def small_in_margin(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """A small digit on a wide page with a few specks of dirt."""
    size = (rng.randrange(800, 1400), rng.randrange(800, 1200))
    box = digit_box(size, rng, rng.uniform(0.06, 0.12))
    mask = ink_mask(strokes, size, box, (box[3] - box[1]) * rng.uniform(0.05, 0.09))
    draw = ImageDraw.Draw(mask)
    for _ in range(rng.randrange(2, 6)):
        x, y = rng.uniform(0, size[0]), rng.uniform(0, size[1])
        draw.ellipse([x, y, x + rng.uniform(1, 3), y + rng.uniform(1, 3)], fill=rng.randrange(80, 200))
    return page(mask, (248, 246, 240), (20, 20, 40), rng, rng.uniform(0.1, 0.3), 0.02)


def enlarged_scan(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """A low-resolution scan (about 24 to 40 pixels) enlarged several times."""
    side = rng.randrange(24, 40)
    size = (side, side)
    box = digit_box(size, rng, rng.uniform(0.6, 0.85))
    small = page(
        ink_mask(strokes, size, box, side * rng.uniform(0.06, 0.1)), (240, 240, 235), (30, 30, 30), rng, 0.1, 0.02
    )
    resample = rng.choice([Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC])
    return small.resize((side * rng.randrange(5, 12),) * 2, resample)


def ruled_paper(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """Pen on a notebook page with light blue ruled lines (or a squared grid), photographed."""
    size = (rng.randrange(300, 800), rng.randrange(300, 800))
    box = digit_box(size, rng, rng.uniform(0.3, 0.6))
    photo = page(
        ink_mask(strokes, size, box, (box[3] - box[1]) * rng.uniform(0.04, 0.08)),
        (250, 250, 248),
        (20, 30, 90),
        rng,
        0.3,
        0.02,
    )
    draw = ImageDraw.Draw(photo)
    spacing = (box[3] - box[1]) * rng.uniform(0.35, 0.6)
    colour = (rng.randrange(140, 190), rng.randrange(170, 210), 235)
    offset = rng.uniform(0, spacing)
    grid = rng.random() < 0.4
    for step in range(int(max(size) / spacing) + 2):
        position = offset + step * spacing
        draw.line([(0, position), (size[0], position)], fill=colour, width=max(1, round(size[1] / 400)))
        if grid:
            draw.line([(position, 0), (position, size[1])], fill=colour, width=max(1, round(size[0] / 400)))
    return photo.filter(ImageFilter.GaussianBlur(0.5))


def paper_on_table(strokes: list[Stroke], rng: random.Random) -> Image.Image:
    """A photo in which the sheet of paper does not fill the frame: a dark or wooden table shows around it."""
    size = (rng.randrange(400, 900), rng.randrange(400, 900))
    sheet_size = (round(size[0] * rng.uniform(0.7, 0.92)), round(size[1] * rng.uniform(0.7, 0.92)))
    sheet = pen_photo(strokes, rng).resize(sheet_size).convert("RGBA").rotate(rng.uniform(-6, 6), expand=True)
    photo = Image.new("RGB", size, rng.choice([(60, 40, 25), (120, 85, 50), (35, 35, 40)]))
    left = rng.randrange(-sheet.width // 20, max(1, size[0] - sheet.width + sheet.width // 20))
    top = rng.randrange(-sheet.height // 20, max(1, size[1] - sheet.height + sheet.height // 20))
    photo.paste(sheet, (left, top), sheet)
    return photo


STYLES: dict[str, Callable[[list[Stroke], random.Random], Image.Image]] = {
    "pen-photo": pen_photo,
    "coloured-pen": coloured_pen,
    "chalk": chalk,
    "pencil": pencil,
    "marker-or-fineliner": marker_or_fineliner,
    "small-in-margin": small_in_margin,
    "enlarged-scan": enlarged_scan,
    "ruled-paper": ruled_paper,
    "paper-on-table": paper_on_table,
}


def encode(image: Image.Image, kind: str, rng: random.Random) -> tuple[bytes, str]:
    """Return image saved as one of the file kinds people hand in, and its file suffix."""
    buffer = io.BytesIO()
    grey = image.convert("L")
    if kind == "jpeg":
        image.save(buffer, "JPEG", quality=rng.randrange(40, 90))
    elif kind == "jpeg-grey":
        grey.save(buffer, "JPEG", quality=rng.randrange(50, 90))
    elif kind == "jpeg-cmyk":
        image.convert("CMYK").save(buffer, "JPEG", quality=80)
    elif kind == "jpeg-rotated":
        exif = Image.Exif()
        exif[0x0112] = 6
        image.rotate(90, expand=True).save(buffer, "JPEG", quality=80, exif=exif)
    elif kind == "png-16bit":
        Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257).save(buffer, "PNG", compress_level=1)
    elif kind == "png-palette":
        image.quantize(64, method=Image.Quantize.FASTOCTREE).save(buffer, "PNG", compress_level=1)
    elif kind == "png-rgba":
        image.convert("RGBA").save(buffer, "PNG", compress_level=1)
    elif kind == "png":
        image.save(buffer, "PNG", compress_level=1)
    else:
        image.save(buffer, kind.upper())
    suffix = {"jpeg": "jpg", "jpeg-grey": "jpg", "jpeg-cmyk": "jpg", "jpeg-rotated": "jpg", "tiff": "tif"}
    return buffer.getvalue(), suffix.get(kind, "png" if kind.startswith("png") else kind)


FILE_KINDS = [
    "jpeg",
    "png",
    "jpeg-grey",
    "png-16bit",
    "jpeg-cmyk",
    "png-palette",
    "jpeg-rotated",
    "png-rgba",
    "webp",
    "gif",
    "bmp",
    "tiff",
]


def write_set(folder: Path, per_style_and_digit: int, seed: int) -> list[tuple[Path, int, str]]:
    """Write the set into folder; return (path, digit, style) for every file."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for style, draw in STYLES.items():
        for digit in range(10):
            for copy in range(per_style_and_digit):
                kind = FILE_KINDS[len(written) % len(FILE_KINDS)]
                data, suffix = encode(draw(written_digit(digit, rng), rng), kind, rng)
                path = folder / f"{style}-{digit}-{copy}.{suffix}"
                path.write_bytes(data)
                written.append((path, digit, style))
    return written

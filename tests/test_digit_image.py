"""mnist_cnn/digit_image.py: every image mode read from its content; MNIST-style preparation robust to light."""

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import handwriting
from mnist_cnn import digit_image
from mnist_cnn.data import MNIST_MEAN, MNIST_STD


def drawn_digit(digit: int = 3, size: int = 200, width: float = 14.0) -> Image.Image:
    """Return a clean 'L' image of a pen-drawn digit, dark ink on white."""
    strokes = handwriting.written_digit(digit, random.Random(digit))
    mask = handwriting.ink_mask(strokes, (size, size), (0.25 * size, 0.15 * size, 0.75 * size, 0.85 * size), width)
    return Image.eval(mask, lambda value: 255 - value)


def pixels_of(image: Image.Image) -> torch.Tensor:
    """Return the prepared 28x28 field of image in [0, 1]."""
    return digit_image.prepare(image)[0] * MNIST_STD + MNIST_MEAN


def reopened(image: Image.Image, format_name: str, **options: object) -> Image.Image:
    """Return image saved in format_name and opened again, as a user's file would be."""
    buffer = io.BytesIO()
    image.save(buffer, format_name, **options)
    buffer.seek(0)
    return Image.open(buffer)


def with_exif_rotation(image: Image.Image) -> Image.Image:
    """Return image stored rotated, with the EXIF orientation that turns it upright again."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return reopened(image.rotate(90, expand=True), "JPEG", quality=95, exif=exif)


def sixteen_bit(image: Image.Image) -> Image.Image:
    """Return image as a 16-bit greyscale PNG that uses the whole 16-bit range."""
    return reopened(Image.fromarray(np.asarray(image, dtype=np.uint16) * 257), "PNG")


def transparent(image: Image.Image) -> Image.Image:
    """Return image as black ink on a fully transparent background (RGBA)."""
    ink = Image.new("RGBA", image.size, (0, 0, 0, 255))
    clear = Image.new("RGBA", image.size, (0, 0, 0, 0))
    return reopened(Image.composite(ink, clear, Image.eval(image, lambda value: 255 - value)), "PNG")


def palette_with_transparency(image: Image.Image) -> Image.Image:
    """Return image as a palette PNG whose white is transparent."""
    palette = image.convert("P")
    return reopened(palette, "PNG", transparency=palette.getpixel((0, 0)))


FORMS = {
    "png-1bit": lambda image: reopened(image.point(lambda value: 255 if value > 128 else 0).convert("1"), "PNG"),
    "png-grey": lambda image: reopened(image, "PNG"),
    "png-16bit": sixteen_bit,
    "png-grey-alpha": lambda image: reopened(image.convert("LA"), "PNG"),
    "png-palette": lambda image: reopened(image.convert("RGB").quantize(16), "PNG"),
    "png-palette-transparent": palette_with_transparency,
    "png-rgb": lambda image: reopened(image.convert("RGB"), "PNG"),
    "png-rgba": transparent,
    "jpeg-grey": lambda image: reopened(image, "JPEG", quality=90),
    "jpeg-rgb": lambda image: reopened(image.convert("RGB"), "JPEG", quality=90),
    "jpeg-cmyk": lambda image: reopened(image.convert("CMYK"), "JPEG", quality=90),
    "jpeg-exif-rotated": with_exif_rotation,
    "gif": lambda image: reopened(image, "GIF"),
    "bmp": lambda image: reopened(image, "BMP"),
    "webp": lambda image: reopened(image.convert("RGB"), "WEBP", quality=90),
    "tiff": lambda image: reopened(image, "TIFF"),
    "tiff-16bit": lambda image: reopened(Image.fromarray(np.asarray(image, dtype=np.uint16) * 257), "TIFF"),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_image_kind_is_read_from_its_content(form: str) -> None:
    original = drawn_digit()
    expected = pixels_of(original)
    prepared = pixels_of(FORMS[form](original))
    assert (prepared - expected).abs().mean() < 0.03, form
    assert prepared.max() > 0.9


def test_sixteen_bit_images_use_their_whole_range() -> None:
    grey = digit_image.grey_pixels(sixteen_bit(drawn_digit()))
    assert grey.max().item() == pytest.approx(1.0) and grey.min().item() == pytest.approx(0.0)


def test_first_frame_of_an_animated_gif() -> None:
    digit, blank = drawn_digit(), Image.new("L", (200, 200), 255)
    buffer = io.BytesIO()
    digit.save(buffer, "GIF", save_all=True, append_images=[blank])
    assert (pixels_of(Image.open(buffer)) - pixels_of(digit)).abs().mean() < 0.03


def test_light_ink_on_dark_gives_the_same_digit() -> None:
    digit = drawn_digit()
    assert (pixels_of(Image.eval(digit, lambda value: 255 - value)) - pixels_of(digit)).abs().mean() < 0.02


def test_uneven_light_and_a_table_beside_the_paper_change_little() -> None:
    digit = np.asarray(drawn_digit(size=300), dtype=np.float32)
    light = np.linspace(1.0, 0.35, 300, dtype=np.float32)[None, :] * np.ones((300, 1), np.float32)
    photo = np.full((400, 400), 50, np.float32)
    photo[40:340, 60:360] = digit * light
    shaded = Image.fromarray(photo.astype(np.uint8))
    assert (pixels_of(shaded) - pixels_of(drawn_digit(size=300))).abs().mean() < 0.05


def test_specks_far_from_the_digit_are_left_out() -> None:
    digit = drawn_digit(size=300)
    dirty = digit.copy()
    draw = ImageDraw.Draw(dirty)
    for x, y in [(10, 10), (280, 20), (15, 280), (285, 285)]:
        draw.ellipse([x, y, x + 3, y + 3], fill=0)
    assert (pixels_of(dirty) - pixels_of(digit)).abs().mean() < 0.01


@pytest.mark.parametrize("width", [2.0, 40.0])
def test_strokes_are_brought_towards_mnists_thickness(width: float) -> None:
    prepared = pixels_of(drawn_digit(size=400, width=width)) > 0.5
    assert 1.2 < digit_image.stroke_width(prepared) < 3.5, digit_image.stroke_width(prepared)


def test_the_digit_fits_a_20_pixel_box_centred_by_mass() -> None:
    field = pixels_of(drawn_digit(size=300))
    rows, columns = (field > 0.05).nonzero(as_tuple=True)
    assert rows.max() - rows.min() < 21 and columns.max() - columns.min() < 21
    mass = field.sum()
    centre = ((field.sum(1) * torch.arange(28)).sum() / mass, (field.sum(0) * torch.arange(28)).sum() / mass)
    assert all(12.0 <= value <= 15.0 for value in centre)


@pytest.mark.parametrize("colour", [0, 128, 255])
def test_an_image_without_contrast_holds_no_digit(colour: int) -> None:
    with pytest.raises(digit_image.ImageError, match="no digit found"):
        digit_image.prepare(Image.new("L", (60, 40), colour))


def test_oversized_image_is_refused_before_decoding() -> None:
    huge = Image.new("1", (8000, 6000))
    with pytest.raises(digit_image.ImageError, match=r"too large: 8000x6000 pixels, more than 40 megapixels"):
        digit_image.check_size(huge)

"""web/: the page prepares a drawing as mnist_cnn/digit_image.py does, and the static site works as a visitor uses it:
in Chromium, from a plain static server, with no request outside its origin and no cross-origin isolation.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import export
import handwriting
import predict
import train
from conftest import ROOT, require
from mnist_cnn import digit_image
from mnist_cnn.site import RUNTIME, RUNTIME_FILES
from tools import pagebench

NODE = shutil.which("node")
PAGE_TOLERANCE = 0.01  # largest difference of any probability between the page and predict.py
SUPERSAMPLING = 4


def drawing(strokes: list[handwriting.Stroke], box: tuple[float, float, float], width: float) -> np.ndarray:
    """Return strokes in a unit box drawn white on black on the 280x280 pad, antialiased as a canvas draws them."""
    left, top, size = box
    side = pagebench.PAD_SIDE * SUPERSAMPLING
    image = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(image)
    radius = width * SUPERSAMPLING / 2
    for stroke in strokes:
        points = [((left + x * size) * SUPERSAMPLING, (top + y * size) * SUPERSAMPLING) for x, y in stroke]
        pen.line(points, fill=255, width=round(2 * radius), joint="curve")
        for x, y in (points[0], points[-1]):
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    small = image.resize((pagebench.PAD_SIDE, pagebench.PAD_SIDE), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32) / 255


def pad_strokes(digit: int, style: int) -> tuple[list[handwriting.Stroke], tuple[float, float, float]]:
    """The strokes of one of two styles of a digit, smoothed, in a unit box, and the box on the pad they fill: the
    first shape large and centred, or the last one smaller and off-centre.
    """
    shapes = handwriting.SHAPES[digit]
    shape = shapes[0] if style == 0 else shapes[-1]
    strokes = [handwriting.smooth([(0.15 + 0.7 * x, y) for x, y in stroke], samples=4) for stroke in shape]
    return strokes, (40.0, 30.0, 210.0) if style == 0 else (95.0, 85.0, 130.0)


def prepared_by_the_page(greys: list[np.ndarray]) -> list[list[float] | str]:
    """Prepare each grey pad with web/digit_image.js under Node.js: a 28x28 field each, or the error's message."""
    drawings = [{"height": g.shape[0], "width": g.shape[1], "pixels": g.ravel().astype(float).tolist()} for g in greys]
    found = subprocess.run(
        [NODE, str(ROOT / "tests" / "prepare_drawing.mjs")],
        input=json.dumps(drawings),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(found.stdout)


def test_the_page_prepares_drawings_as_digit_image_does() -> None:
    require("Node.js (it runs the page's JavaScript here)", NODE is not None)
    greys = [
        drawing(*pad_strokes(digit, style), width) for digit in range(10) for style, width in ((0, 20), (1, 20), (1, 9))
    ]
    greys.append(np.zeros((280, 280), np.float32))  # a blank pad
    fields = prepared_by_the_page(greys)
    for number, (grey, field) in enumerate(zip(greys[:-1], fields[:-1], strict=True)):
        reference = digit_image.prepare_pixels(torch.from_numpy(grey))[0] * digit_image.MNIST_STD
        reference += digit_image.MNIST_MEAN
        assert not isinstance(field, str), f"drawing {number}: {field}"
        assert np.abs(np.array(field).reshape(28, 28) - reference.numpy()).max() < 1e-4, f"drawing {number}"
    assert fields[-1] == "no digit found (the image has no contrast)"
    with pytest.raises(digit_image.ImageError, match=re.escape(fields[-1])):
        digit_image.prepare_pixels(torch.from_numpy(greys[-1]))


def test_the_page_uses_the_references_settings() -> None:
    script = (ROOT / "web" / "digit_image.js").read_text()
    block = script[script.index("export const SETTINGS = {") : script.index("};")]
    settings = dict(re.findall(r"(\w+): ([\d.]+),", block))
    assert len(settings) == 11
    for name, value in settings.items():
        assert float(value) == getattr(digit_image, name), name


@pytest.fixture(scope="module")
def site(trained: train.TrainResult, data_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static site of the session's checkpoint, as python export.py --site builds it."""
    require("the page's runtime (npm ci)", all((RUNTIME / "dist" / name).is_file() for name in RUNTIME_FILES))
    folder = tmp_path_factory.mktemp("static") / "site"
    assert (
        export.main(["--checkpoint", str(trained.checkpoint_path), "--site", str(folder), "--data-dir", data_dir]) == 0
    )
    return folder


@pytest.fixture(scope="module")
def browser() -> object:
    """Headless Chromium driven by Playwright."""
    require("Chromium or Chrome (apt-get install chromium)", pagebench.chromium_path() is not None)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=pagebench.chromium_path(), args=pagebench.CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def predict_py(png: bytes, checkpoint: Path, folder: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[float]]:
    """Return predict.py's digit and ten probabilities for a PNG file."""
    path = folder / "drawing.png"
    path.write_bytes(png)
    capsys.readouterr()
    assert predict.main([str(path), "--checkpoint", str(checkpoint), "--json", "--top", "10"]) == 0
    answer = json.loads(capsys.readouterr().out)
    probabilities = [0.0] * 10
    for entry in answer["top"]:
        probabilities[entry["digit"]] = entry["probability"]
    return answer["digit"], probabilities


@pytest.mark.slow
def test_a_visitor_draws_every_digit_and_the_page_reads_them_as_predict_does(
    site: Path, browser: object, trained: train.TrainResult, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocked, rows = [], []
    with pagebench.static_server(site) as origin:
        context = browser.new_context(viewport=pagebench.VIEWPORT)
        page = pagebench.open_page(context, origin, blocked)
        page.wait_for_selector("main[data-ready]")
        assert page.get_attribute("main", "data-mode") == "page"
        assert page.evaluate("self.crossOriginIsolated") is False  # as on GitHub Pages: one WebAssembly thread
        for digit in range(10):
            for style in (0, 1):
                strokes, (left, top, size) = pad_strokes(digit, style)
                placed = [[(left + x * size, top + y * size) for x, y in stroke] for stroke in strokes]
                pagebench.draw(page, placed, steps=1)  # the smoothed strokes have points enough
                shown, probabilities, status = pagebench.settled_answer(page)
                reference, expected = predict_py(pagebench.pad_png(page), trained.checkpoint_path, tmp_path, capsys)
                difference = max(abs(a - b) for a, b in zip(probabilities, expected, strict=True))
                rows.append(f"| {digit} | {style} | {shown} | {reference} | {difference:.6f} |")
                assert shown == reference and difference <= PAGE_TOLERANCE, (digit, style, status, rows[-1])
                pagebench.clear(page)
        pagebench.draw(page, pagebench.BENCH_DIGITS[7])
        pagebench.settled_answer(page)
        page.wait_for_timeout(300)  # the bars' transition
        page.screenshot(path=os.environ.get("DRAW_SCREENSHOT", str(tmp_path / "draw.png")))
        context.close()
    assert blocked == []
    table = "\n".join(
        [
            "| digit | style | page | predict.py | largest probability difference |",
            "| --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    if os.environ.get("WEB_AGREEMENT_TABLE"):
        Path(os.environ["WEB_AGREEMENT_TABLE"]).write_text(table + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["no WebAssembly", "a broken model"])
def test_a_page_that_cannot_run_its_model_says_so_instead_of_showing_a_pad(
    site: Path, browser: object, tmp_path: Path, fault: str
) -> None:
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    if fault == "a broken model":
        (broken / "model.onnx").write_bytes(b"not a model")
    with pagebench.static_server(broken) as origin:
        context = browser.new_context(viewport=pagebench.VIEWPORT)
        if fault == "no WebAssembly":
            context.add_init_script("delete globalThis.WebAssembly;")
        page = pagebench.open_page(context, origin, [])
        page.wait_for_selector("main[data-ready]")
        message = page.get_by_test_id("unavailable")
        assert page.get_attribute("main", "data-mode") == "unavailable"
        assert message.is_visible() and "cannot run its model" in message.inner_text()
        assert ("no WebAssembly" in message.inner_text()) == (fault == "no WebAssembly")
        assert not page.get_by_test_id("pad").is_visible()
        context.close()

"""Measure the static drawing site in headless Chromium: its size, the time to its first prediction, each prediction's.

Run it from the repository's root as python -m tools.pagebench (after npm ci). It builds the site from
a checkpoint (export.py --site), serves it with Python's plain static server (what python -m
http.server runs, no cross-origin isolation, so onnxruntime-web runs on one thread), blocks every
request outside that origin, and draws digits on the pad. Prints a markdown table. The browser
helpers here drive the page for tests/test_web.py too.
"""

import argparse
import base64
import contextlib
import functools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import export
from mnist_cnn.checkpoint import newest_checkpoint
from mnist_cnn.cli import BadInput, positive_int, reports_errors
from mnist_cnn.data import add_data_option
from mnist_cnn.site import MODEL_FILE, RUNTIME_FOLDER

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
PAD_SIDE = 280
VIEWPORT = {"width": 1000, "height": 620}
TIMEOUT_MS = 30_000
Stroke = list[tuple[float, float]]
BENCH_DIGITS: dict[int, list[Stroke]] = {  # strokes in pad pixels
    1: [[(150, 50), (146, 140), (140, 235)]],
    4: [[(170, 40), (70, 170), (215, 170)], [(180, 100), (180, 245)]],
    7: [[(75, 60), (205, 60), (160, 140), (120, 235)]],
    0: [[(140, 45), (90, 80), (80, 160), (110, 230), (170, 235), (200, 170), (195, 80), (150, 45)]],
}


class BrowserMissing(BadInput):
    """No Chromium or Chrome, or no Playwright, on this machine."""


def chromium_path() -> str | None:
    """Return the path of a Chromium or Chrome to drive ($CHROMIUM_PATH first), or None when this machine has none."""
    candidates = [os.environ.get("CHROMIUM_PATH"), *CHROMIUM_CANDIDATES, shutil.which("chromium")]
    return next((path for path in candidates if path and Path(path).is_file()), None)


class QuietFiles(SimpleHTTPRequestHandler):
    """Python's plain static file server, without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """Serve folder with Python's plain static server on a free local port; yield its origin."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def open_page(context: object, origin: str, blocked: list[str]) -> object:
    """Open origin's page in a browser context with every request outside origin blocked, its address kept in
    blocked.
    """
    page = context.new_page()

    def only_the_origin(route: object) -> None:
        if route.request.url.startswith(origin + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_origin)
    page.goto(origin + "/")
    return page


def draw(page: object, strokes: list[Stroke], steps: int = 8) -> None:
    """Draw strokes (pad pixels) on the page's pad with the mouse, moving in steps from each point to the next."""
    box = page.get_by_test_id("pad").bounding_box()
    scale = box["width"] / PAD_SIDE
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=steps)
        page.mouse.up()


def settled_answer(page: object) -> tuple[int | None, list[float] | None, str]:
    """Wait until no prediction waits or runs; return the digit shown, its ten probabilities and the status line."""
    page.wait_for_selector("main[data-ready][data-busy=false]", timeout=TIMEOUT_MS)
    digit = page.get_by_test_id("prediction").text_content()
    values = page.get_by_test_id("probabilities").get_attribute("data-values")
    probabilities = [float(value) for value in values.strip("[]").split(",")] if values else None
    return (int(digit) if digit else None), probabilities, page.inner_text("#status")


def pad_png(page: object) -> bytes:
    """Return the pad's drawing as the PNG the page itself makes of it."""
    url = page.evaluate("document.querySelector('[data-testid=pad]').toDataURL('image/png')")
    return base64.b64decode(url.split(",", 1)[1])


def clear(page: object) -> None:
    """Press the page's Clear button."""
    page.get_by_test_id("clear").click()


def measure(site: Path, repeats: int) -> dict:
    """Load the site in headless Chromium repeats times; return its size, the load times and prediction times."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserMissing("Playwright is not installed: pip install -r requirements.txt") from None
    if chromium_path() is None:
        raise BrowserMissing("no Chromium or Chrome on this machine (apt-get install chromium, or set CHROMIUM_PATH)")
    ready, first, each, blocked = [], [], [], []
    with static_server(site) as origin, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for _ in range(repeats):
                context = browser.new_context(viewport=VIEWPORT)  # a fresh cache each time: what a first visit costs
                start = time.perf_counter()
                page = open_page(context, origin, blocked)
                page.wait_for_selector("main[data-ready]", timeout=TIMEOUT_MS)
                ready.append(time.perf_counter() - start)
                if page.get_attribute("main", "data-mode") != "page":
                    raise BadInput(f"{site} did not run its model in the page: {page.inner_text('main')[:200]}")
                for number, strokes in enumerate(BENCH_DIGITS.values()):
                    draw(page, strokes)
                    settled_answer(page)
                    if number == 0:
                        first.append(time.perf_counter() - start)
                    each.append(float(page.get_attribute("main", "data-milliseconds")))
                    clear(page)
                context.close()
        finally:
            browser.close()
    files = {path.relative_to(site).as_posix(): path.stat().st_size for path in site.rglob("*") if path.is_file()}
    return {
        "files": files,
        "ready_seconds": ready,
        "first_prediction_seconds": first,
        "prediction_ms": each,
        "blocked": blocked,
    }


def table(figures: dict, checkpoint: Path) -> str:
    """Return the figures as a markdown table with what produced them."""
    files = figures["files"]
    runtime = sum(size for name, size in files.items() if name.startswith(RUNTIME_FOLDER + "/"))
    timed = ("ready_seconds", "first_prediction_seconds", "prediction_ms")
    median = {key: statistics.median(figures[key]) for key in timed}
    page = sum(size for name, size in files.items() if "/" not in name and name != MODEL_FILE)
    rows = [
        ("site, every file", f"{sum(files.values()):,} bytes"),
        ("of which onnxruntime-web (WebAssembly and its loader)", f"{runtime:,} bytes"),
        ("of which the model (ONNX)", f"{files[MODEL_FILE]:,} bytes"),
        ("of which the page (HTML, JavaScript, model.json)", f"{page:,} bytes"),
        ("page load to the model ready, median", f"{median['ready_seconds']:.2f} s"),
        (
            "page load to the first prediction, median",
            f"{median['first_prediction_seconds']:.2f} s",
        ),
        (
            "one prediction (prepare the drawing, run the model), median",
            f"{median['prediction_ms']:.0f} ms",
        ),
        ("one prediction, slowest", f"{max(figures['prediction_ms']):.0f} ms"),
        ("requests outside the site's origin", str(len(figures["blocked"]))),
    ]
    return "\n".join(
        [
            f"Static site of {checkpoint.name}, headless Chromium, {len(figures['ready_seconds'])} fresh loads, "
            f"{len(figures['prediction_ms'])} predictions",
            "",
            "| measure | value |",
            "| --- | --- |",
            *(f"| {name} | {value} |" for name, value in rows),
        ]
    )


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run tools/pagebench.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to publish (default: the newest in models/)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="fresh page loads (default: 5)")
    add_data_option(parser)
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or newest_checkpoint()
    with tempfile.TemporaryDirectory(prefix="pagebench-") as temporary:
        site = Path(temporary) / "site"
        with contextlib.redirect_stdout(sys.stderr):
            status = export.main(["--checkpoint", str(checkpoint), "--site", str(site), "--data-dir", args.data_dir])
        if status:
            return status
        print(table(measure(site, args.repeats), checkpoint))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The static drawing site: the page of web/, a checked ONNX model and onnxruntime-web's files from npm, in one folder.

The page finds model.json beside it and then runs the model itself (web/draw.html); served by serve.py,
where there is no model.json, it asks the server instead. The runtime comes from the npm package that
package.json and package-lock.json pin: run npm ci once before building a site.
"""

import hashlib
import json
import shutil
from pathlib import Path

from mnist_cnn.cli import BadInput
from mnist_cnn.data import MNIST_MEAN, MNIST_STD
from mnist_cnn.files import strict_json

ROOT = Path(__file__).resolve().parents[1]
PAGE_FILES = {"index.html": ROOT / "web" / "draw.html", "digit_image.js": ROOT / "web" / "digit_image.js"}
RUNTIME = ROOT / "node_modules" / "onnxruntime-web"
RUNTIME_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")  # the WebAssembly build, one thread or more
RUNTIME_FOLDER = "ort"
MODEL_FILE = "model.onnx"
SETTINGS_FILE = "model.json"


class SiteError(BadInput):
    """The site cannot be built: the runtime is not installed, or the folder holds something else."""


def runtime_version() -> str:
    """Return the installed onnxruntime-web's version; raise SiteError when its files are missing."""
    missing = [name for name in RUNTIME_FILES if not (RUNTIME / "dist" / name).is_file()]
    if missing:
        raise SiteError(
            f"the page's runtime is missing ({RUNTIME / 'dist' / missing[0]}): run npm ci in {ROOT}, which installs "
            "onnxruntime-web as package-lock.json pins it"
        )
    return json.loads((RUNTIME / "package.json").read_text())["version"]


def built_here(site: Path) -> bool:
    """Return whether site holds a site that export.py built: a model.json that names onnxruntime-web."""
    try:
        settings = json.loads((site / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and str(settings.get("runtime", "")).startswith("onnxruntime-web ")


def check_site_folder(site: Path) -> None:
    """Raise SiteError when site exists but is neither empty nor a site built here, or holds the current folder, so
    that nothing else is replaced.
    """
    if Path.cwd().resolve().is_relative_to(site.resolve()):
        raise SiteError(f"--site {site} holds the current folder: choose a folder below it")
    if site.exists() and not (site.is_dir() and (not any(site.iterdir()) or built_here(site))):
        raise SiteError(f"{site} exists and is not a site that export.py built: choose another folder")


def lay_out(folder: Path, views: int, source_checkpoint: str) -> dict:
    """Copy the page and the runtime into folder, beside its model.onnx, and write model.json; return its settings."""
    for name, source in PAGE_FILES.items():
        shutil.copyfile(source, folder / name)
    (folder / RUNTIME_FOLDER).mkdir()
    for name in RUNTIME_FILES:
        shutil.copyfile(RUNTIME / "dist" / name, folder / RUNTIME_FOLDER / name)
    settings = {
        "model": MODEL_FILE,
        "sha256": hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest(),
        "views": views,
        "mean": MNIST_MEAN,
        "std": MNIST_STD,
        "source_checkpoint": source_checkpoint,
        "runtime": f"onnxruntime-web {runtime_version()} (MIT license)",
    }
    (folder / SETTINGS_FILE).write_text(strict_json(settings))
    return settings


def site_bytes(site: Path) -> int:
    """Return the size of every file under site."""
    return sum(path.stat().st_size for path in site.rglob("*") if path.is_file())

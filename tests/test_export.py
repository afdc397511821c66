"""export.py: a checked, self-contained ONNX file that onnxruntime runs like PyTorch; the README code without torch."""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

import export
import train
from conftest import ROOT, as_pixels, readme_python_block, require
from mnist_cnn import site as site_module
from mnist_cnn.checkpoint import load_checkpoint
from mnist_cnn.data import MNIST_MEAN, MNIST_STD, load_mnist
from mnist_cnn.inference import with_views
from model import MnistCNN

BFLOAT16_ACCURACY_TOLERANCE = 0.1  # points; a handful of the 10,000 test images may flip between precisions
BLOCK_TORCH = """import sys


class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")


sys.meta_path.insert(0, BlockTorch())
"""


@pytest.fixture(scope="module", params=[5, 1], ids=["five-views", "one-view"])
def exported(
    request: pytest.FixtureRequest,
    trained: train.TrainResult,
    one_view_checkpoint: Path,
    data_dir: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, str, int]:
    """The session's checkpoint exported by export.py's command line with --views 5, or the one whose recipe reads
    one view with no --views; the file, what export printed, and the views.
    """
    views = request.param
    checkpoint, asked = (trained.checkpoint_path, ["--views", "5"]) if views == 5 else (one_view_checkpoint, [])
    output = tmp_path_factory.mktemp("onnx") / "model.onnx"
    args = ["--checkpoint", str(checkpoint), "--output", str(output), "--data-dir", data_dir]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = export.main([*args, *asked])
    assert status == 0
    return output, printed.getvalue(), views


@pytest.mark.slow
def test_export_prints_both_accuracies_and_the_difference(
    exported: tuple[Path, str, int], trained: train.TrainResult
) -> None:
    _, printed, views = exported
    torch_accuracy = float(re.search(r"pytorch accuracy  (\d+\.\d\d)%", printed).group(1))
    onnx_accuracy = float(re.search(r"onnx accuracy     (\d+\.\d\d)%", printed).group(1))
    # The checkpoint's figures were scored under bfloat16 autocast where the CPU has it; export scores in float32.
    stored = trained.metadata["metrics"]["test_accuracy" if views == 5 else "test_accuracy_one_view"]
    assert abs(torch_accuracy - stored) <= BFLOAT16_ACCURACY_TOLERANCE
    assert round(abs(onnx_accuracy - torch_accuracy), 2) <= round(100 * (1 - export.MIN_AGREEMENT), 2)
    difference = float(re.search(r"largest logit difference  (\S+)", printed).group(1))
    assert difference <= export.MAX_LOGIT_DIFFERENCE


@pytest.mark.slow
def test_file_is_self_contained_with_names_and_metadata(
    exported: tuple[Path, str, int], trained: train.TrainResult
) -> None:
    path, _, views = exported
    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [value.name for value in proto.graph.input] == ["images"]
    assert [value.name for value in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    properties = {prop.key: prop.value for prop in proto.metadata_props}
    stored = trained.metadata["metrics"]["test_accuracy" if views == 5 else "test_accuracy_one_view"]
    assert float(properties["test_accuracy"]) == stored
    assert float(properties["mean"]) == MNIST_MEAN and float(properties["std"]) == MNIST_STD
    assert properties["source_checkpoint"] == (trained.checkpoint_path.name if views == 5 else "mnist_cnn_one_view.pt")
    assert properties["test_time_views"] == str(views)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_onnxruntime_matches_pytorch_at_any_batch_size(
    exported: tuple[Path, str, int], trained: train.TrainResult, data_dir: str, batch: int
) -> None:
    path, _, views = exported
    images, _ = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = images[:batch].contiguous().numpy()
    logits = session.run(["logits"], {"images": inputs})[0]
    with torch.inference_mode():
        expected = with_views(model.float(), views)(images[:batch].contiguous()).numpy()
    assert logits.shape == (batch, 10)
    assert np.abs(logits - expected).max() <= export.MAX_LOGIT_DIFFERENCE


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MnistCNN]:
    """A fresh model's ONNX file (one view) and the model."""
    torch.manual_seed(0)
    model = MnistCNN().eval()
    path = tmp_path_factory.mktemp("small-onnx") / "model.onnx"
    path.write_bytes(export.onnx_bytes(model, 1, {"source_checkpoint": "fresh.pt"}))
    return path, model


def test_the_check_passes_the_model_it_exported_and_refuses_another(
    small_onnx: tuple[Path, MnistCNN], data_dir: str
) -> None:
    path, model = small_onnx
    images, labels = (part[:256] for part in load_mnist(data_dir, train=False, device=torch.device("cpu")))
    figures = export.check_export(path, model, 1, images, labels)
    assert figures["agreement"] == 1.0 and figures["max_logit_difference"] <= export.MAX_LOGIT_DIFFERENCE
    assert figures["images"] == 256 and figures["onnx_accuracy"] == figures["torch_accuracy"]
    torch.manual_seed(1)
    with pytest.raises(export.ExportCheckError, match="agree on"):
        export.check_export(path, MnistCNN().eval(), 1, images, labels)


@pytest.mark.parametrize(("share", "passes"), [(0.9, True), (1.1, False)])
def test_the_logit_difference_is_checked_at_its_line(
    small_onnx: tuple[Path, MnistCNN], data_dir: str, share: float, passes: bool
) -> None:
    path, model = small_onnx
    images, labels = (part[:256] for part in load_mnist(data_dir, train=False, device=torch.device("cpu")))
    with torch.no_grad():
        nudged = MnistCNN().eval()
        nudged.load_state_dict(model.state_dict())
        nudged.classifier.bias += share * export.MAX_LOGIT_DIFFERENCE  # every logit moves by that much
    if passes:
        export.check_export(path, nudged, 1, images, labels)
    else:
        with pytest.raises(export.ExportCheckError, match="logit"):
            export.check_export(path, nudged, 1, images, labels)


@pytest.mark.parametrize(("disagreements", "passes"), [(5, True), (6, False)])
def test_the_agreement_is_checked_at_its_line(disagreements: int, passes: bool) -> None:
    truth = np.arange(10_000) % 10
    torch_logits = np.eye(10, dtype=np.float32)[truth] * 1e-4  # logits so small that none differs past the line
    onnx_logits = torch_logits.copy()
    onnx_logits[:disagreements] = np.roll(onnx_logits[:disagreements], 1, axis=1)  # 10,000 images: 5 may disagree
    if passes:
        figures = export.compare_logits(onnx_logits, torch_logits, truth)
        assert figures["agreement"] == 0.9995 and figures["onnx_accuracy"] == 99.95
    else:
        with pytest.raises(export.ExportCheckError, match=re.escape("agree on 99.94% of the images, below 99.95%")):
            export.compare_logits(onnx_logits, torch_logits, truth)


def test_failed_check_leaves_no_file(
    trained: train.TrainResult,
    data_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(export, "onnx_bytes", lambda model, views, metadata: b"not an onnx file")
    output = tmp_path / "model.onnx"
    args = ["--checkpoint", str(trained.checkpoint_path), "--output", str(output), "--data-dir", data_dir]
    assert export.main(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: the exported model failed its check") and error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["missing", "not-a-checkpoint"])
def test_bad_checkpoint_exits_two(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "model.pt"
    if case == "not-a-checkpoint":
        path.write_text("not a checkpoint")
    assert export.main(["--checkpoint", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert not path.with_suffix(".onnx").exists()


@pytest.mark.slow
def test_readme_example_runs_where_torch_cannot_be_imported(
    exported: tuple[Path, str, int], data_dir: str, tmp_path: Path
) -> None:
    path, _, _ = exported
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    pixels = as_pixels(images[7, 0]).numpy()
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    shutil.copy(path, tmp_path / "model.onnx")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = os.environ | {"PYTHONPATH": str(blocker)}
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, check=False)
    assert check.returncode == 1 and "torch is blocked" in check.stderr
    result = subprocess.run(
        [sys.executable, "-c", readme_python_block("onnxruntime")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"digit: {labels[7].item()}"


def site_args(trained: train.TrainResult, site: Path, data_dir: str) -> list[str]:
    return ["--checkpoint", str(trained.checkpoint_path), "--site", str(site), "--data-dir", data_dir]


def test_a_failed_check_leaves_no_site_and_the_old_one_whole(
    trained: train.TrainResult,
    data_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.setattr(site_module, "RUNTIME", fake_runtime(tmp_path / "runtime"))
    monkeypatch.setattr(export, "onnx_bytes", lambda model, views, metadata: b"not an onnx file")
    assert export.main(site_args(trained, tmp_path / "new-site", data_dir)) == 1
    assert "failed its check, so" in capsys.readouterr().err
    old = tmp_path / "old-site"
    old.mkdir()
    (old / site_module.SETTINGS_FILE).write_text('{"runtime": "onnxruntime-web 0.0.0"}')
    assert export.main(site_args(trained, old, data_dir)) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == ["old-site", "runtime"]
    assert [path.name for path in old.iterdir()] == [site_module.SETTINGS_FILE]


def fake_runtime(folder: Path) -> Path:
    """A folder laid out like node_modules/onnxruntime-web, with placeholder files."""
    (folder / "dist").mkdir(parents=True)
    for name in site_module.RUNTIME_FILES:
        (folder / "dist" / name).write_text("placeholder")
    (folder / "package.json").write_text('{"version": "0.0.0"}')
    return folder


SITE_REFUSALS = ["a folder of other files", "another program's model.json", "the current folder", "no runtime"]


@pytest.mark.parametrize("case", [*SITE_REFUSALS, "with --output"])
def test_a_site_that_cannot_be_built_exits_two_with_one_line_and_touches_nothing(
    case: str,
    trained: train.TrainResult,
    data_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    site, args = tmp_path / "site", []
    monkeypatch.setattr(site_module, "RUNTIME", fake_runtime(tmp_path / "runtime"))
    if case == "a folder of other files":
        site.mkdir()
        (site / "notes.txt").write_text("mine")
    elif case == "another program's model.json":
        site.mkdir()
        (site / site_module.SETTINGS_FILE).write_text('{"model": "theirs.onnx"}')
    elif case == "the current folder":
        site.mkdir()
        monkeypatch.chdir(site)
    elif case == "no runtime":
        monkeypatch.setattr(site_module, "RUNTIME", tmp_path / "nowhere")
    else:
        args = ["--output", str(tmp_path / "model.onnx")]
    assert export.main([*site_args(trained, site, data_dir), *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    expected = {"a folder of other files": "is not a site", "another program's model.json": "is not a site"}
    expected |= {"the current folder": "holds the current folder", "no runtime": "npm ci", "with --output": "not both"}
    assert expected[case] in error
    assert sorted(path.name for path in tmp_path.iterdir()) == (["runtime", "site"] if site.exists() else ["runtime"])


@pytest.mark.slow
def test_the_site_holds_the_page_the_checked_model_and_the_runtime(
    trained: train.TrainResult, data_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    require("the page's runtime (npm ci)", (site_module.RUNTIME / "package.json").is_file())
    site = tmp_path / "site"
    assert export.main(site_args(trained, site, data_dir)) == 0
    assert f"site              {site}/" in capsys.readouterr().out
    assert export.main(["--checkpoint", str(trained.checkpoint_path), "--output", str(tmp_path / "alone.onnx")]) == 0
    assert (site / "model.onnx").read_bytes() == (tmp_path / "alone.onnx").read_bytes()  # the same bytes either way
    settings = json.loads((site / "model.json").read_text())
    assert settings["sha256"] == hashlib.sha256((site / "model.onnx").read_bytes()).hexdigest()
    assert settings["views"] == 5 and settings["source_checkpoint"] == trained.checkpoint_path.name
    assert (site / "index.html").read_bytes() == (ROOT / "web" / "draw.html").read_bytes()
    for name in site_module.RUNTIME_FILES:
        assert (site / "ort" / name).read_bytes() == (site_module.RUNTIME / "dist" / name).read_bytes()
    assert export.main(site_args(trained, site, data_dir)) == 0  # a site built here is rebuilt in place
    assert sorted(path.name for path in tmp_path.iterdir()) == ["alone.onnx", "site"]


def test_an_export_names_no_folder_of_the_machine_that_made_it(shipped_run: Path) -> None:
    data = next(shipped_run.glob("*.onnx")).read_bytes()
    assert str(ROOT).encode() not in data and b"stack_trace" not in data  # the same bytes from any checkout

"""train.py: the session's run (accuracy, files, recipe), determinism, the loss-weighted draw, the command line."""

import errno
import json
import re
from dataclasses import asdict, fields, replace
from pathlib import Path

import pytest
import torch

import train
from conftest import BAD_LABELS_MESSAGE, checkout_commit, link_or_copy, offline_env, run_script
from mnist_cnn.data import MNIST_FILES, DataError, load_mnist
from mnist_cnn.optim import ScheduledOptimizers
from mnist_cnn.recipe import EVERY_DISTORTION, WHOLE_BATCH_SHIFT, Recipe, build_model, recipe_for
from mnist_cnn.step import make_step
from model import MnistCNN

MIN_ACCURACY = 95.0
MIN_TRAIN_ACCURACY = 90.0  # measured on the augmented (shifted) batches, while they are learned
CHECKPOINT_NAME = re.compile(r"mnist_cnn_\d{8}-\d{6}(-\d+)?\.pt")


def test_one_epoch_reaches_accuracy_floor_with_one_view_and_five(trained: train.TrainResult) -> None:
    metrics = trained.metadata["metrics"]
    assert metrics["test_views"] == 5
    assert metrics["test_accuracy"] >= MIN_ACCURACY and metrics["test_accuracy_one_view"] >= MIN_ACCURACY
    assert metrics["test_loss"] != metrics["test_loss_one_view"]
    assert metrics["train_accuracy"] >= MIN_TRAIN_ACCURACY


def test_checkpoint_has_timestamped_name_and_metadata(
    trained: train.TrainResult,
) -> None:
    assert CHECKPOINT_NAME.fullmatch(trained.checkpoint_path.name)
    checkpoint = torch.load(trained.checkpoint_path, weights_only=True)
    assert checkpoint["num_parameters"] == trained.metadata["num_parameters"]
    assert set(checkpoint["versions"]) == {"python", "torch", "torchvision"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", checkpoint["timestamp"])
    assert checkpoint["git_commit"] == checkout_commit()  # None in a ZIP download of the repository


def test_run_stores_its_whole_recipe_and_architecture(trained: train.TrainResult) -> None:
    assert trained.metadata["recipe"] == asdict(recipe_for(1)) | {"channels": [16, 16, 64]}
    assert trained.metadata["architecture"] == {"full_resolution": False, "channels": [16, 16, 64], "first_padding": 0}


def test_json_matches_checkpoint(trained: train.TrainResult) -> None:
    checkpoint = torch.load(trained.checkpoint_path, weights_only=True)
    assert trained.metadata_path == trained.checkpoint_path.with_suffix(".json")
    stored = json.loads(trained.metadata_path.read_text())
    assert "model_state_dict" not in stored
    assert stored == {key: value for key, value in checkpoint.items() if key != "model_state_dict"}


def test_same_seed_gives_same_weights(data_dir: str) -> None:
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    recipe = Recipe(batch_size=128, augmentation=EVERY_DISTORTION)
    first, second = (train.fit(recipe, images[:1024], labels[:1024]) for _ in range(2))
    assert first.train_loss == second.train_loss
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name


# Another value for each setting of the recipe that takes part in training; test_time_views only in scoring (below).
CHANGED_SETTINGS = {
    "epochs": 2,
    "seed": 1,
    "batch_size": 24,
    "adamw_lr": 0.02,
    "muon_lr": 0.05,
    "muon_momentum": 0.5,
    "weight_decay": 0.01,
    "warmup_fraction": 0.5,
    "label_smoothing": 0.0,
    "full_resolution": True,
    "width": 0.5,
    "channels": (16, 32, 48),
    "first_padding": 2,
    "hard_example_share": 0.0,
    "hard_examples_from": 0.25,
    "relative_losses": False,
    **{f"augmentation.{name}": value for name, value in asdict(EVERY_DISTORTION).items()},
}


@pytest.fixture(scope="module")
def short_runs(data_dir: str) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """320 training images, and the weights that ten steps of the default recipe (batch 32) train on them."""
    images, labels = (part[:320] for part in load_mnist(data_dir, train=True, device=torch.device("cpu")))
    return images, labels, train.fit(Recipe(batch_size=32), images, labels).model.state_dict()


@pytest.mark.parametrize("setting", CHANGED_SETTINGS)
def test_every_setting_of_the_recipe_changes_what_training_makes(setting: str, short_runs: tuple) -> None:
    images, labels, default = short_runs
    name, _, inner = setting.partition(".")
    value = replace(WHOLE_BATCH_SHIFT, **{inner: CHANGED_SETTINGS[setting]}) if inner else CHANGED_SETTINGS[setting]
    changed = train.fit(replace(Recipe(batch_size=32), **{name: value}), images, labels).model.state_dict()
    assert any(
        changed[key].shape != tensor.shape or not torch.equal(changed[key], tensor) for key, tensor in default.items()
    ), f"{setting} changed nothing that training made"


def test_every_setting_of_the_recipe_is_tried() -> None:
    names = {name.partition(".")[0] for name in CHANGED_SETTINGS} | {"test_time_views"}
    assert names == {item.name for item in fields(Recipe)}
    assert {name.partition(".")[2] for name in CHANGED_SETTINGS if "." in name} == set(asdict(WHOLE_BATCH_SHIFT))
    assert all(asdict(WHOLE_BATCH_SHIFT)[name] != value for name, value in asdict(EVERY_DISTORTION).items())


def test_command_line_options_override_the_recipe_for_the_epochs() -> None:
    args = train.parse_args(
        ["--epochs", "3", "--lr", "0.01", "--muon-lr", "0.2", "--set", "full_resolution=false", "--seed", "4"]
    )
    recipe = train.recipe_from_args(args)
    assert recipe == recipe_for(3, adamw_lr=0.01, muon_lr=0.2, full_resolution=False, seed=4)
    assert train.recipe_from_args(train.parse_args(["--epochs", "3"])) == recipe_for(3)


def test_main_prints_the_recipe_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def refuse(recipe: Recipe, args: object) -> None:
        raise DataError("stop here")

    monkeypatch.setattr(train, "run_training", refuse)
    assert train.main(["--epochs", "10", "--batch-size", "100"]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("recipe: 10 epoch(s), seed 0, batch 100,") and "full-resolution" in printed


def epoch_on_256_images(data_dir: str, losses: torch.Tensor, hard_from: int | None) -> None:
    """Train a fresh full-resolution model for one epoch of 256 test images in batches of 64, recording losses."""
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    recipe = recipe_for(3, batch_size=64, adamw_lr=0.01, muon_lr=0.05)
    model = build_model(recipe).to(memory_format=torch.channels_last)
    take_step = make_step(model, ScheduledOptimizers(model, recipe, 20), recipe, None)
    generator = torch.Generator().manual_seed(0)
    train.train_epoch(take_step, images[:256], labels[:256], recipe, generator, losses, hard_from, "test", False)


def test_shuffled_epoch_records_every_images_loss(data_dir: str) -> None:
    losses = torch.full((256,), -1.0)
    epoch_on_256_images(data_dir, losses, None)
    assert (losses >= 0).all() and losses.std() > 0


@pytest.mark.parametrize("hard_from", [0, 2])
def test_hard_steps_draw_the_high_loss_images(data_dir: str, hard_from: int) -> None:
    losses = torch.zeros(256)
    losses[:10] = 100.0
    epoch_on_256_images(data_dir, losses, hard_from)
    assert (losses[:10] != 100.0).all()
    never_drawn = (losses[10:] == 0).sum().item()
    assert never_drawn > (100 if hard_from == 0 else 30)


@pytest.mark.parametrize(("accuracy", "status"), [(99.0, 1), (99.5, 0), (99.9, 0)])
def test_min_accuracy_sets_exit_status(
    accuracy: float, status: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = train.TrainResult(
        tmp_path / "m.pt",
        tmp_path / "m.json",
        {
            "num_parameters": 1,
            "metrics": dict.fromkeys(
                [
                    "train_accuracy",
                    "train_loss",
                    "test_loss",
                    "train_seconds",
                    "train_images_per_second",
                    "test_accuracy_one_view",
                    "test_loss_one_view",
                ],
                1.0,
            )
            | {"test_accuracy": accuracy, "test_views": 5, "test_images": 10_000, "split": "test"},
            "config": {"autocast": None},
        },
    )
    monkeypatch.setattr(train, "run_training", lambda recipe, args: result)
    assert train.main(["--min-accuracy", "99.5"]) == status


def test_help_exits_zero(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        train.main(["--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    for option in [
        "--epochs",
        "--batch-size",
        "--adamw-lr",
        "--set",
        "--validation",
        "--muon-lr",
        "--seed",
        "--data-dir",
        "--out-dir",
        "--device",
        "--min-accuracy",
        "--no-progress",
    ]:
        assert option in printed


BAD_OPTIONS = [
    (["--batch-size", "-1"], "--batch-size: must be greater than 0"),
    (["--lr", "0"], "--adamw-lr/--lr: must be a finite number greater than 0"),
    (["--adamw-lr", "nan"], "--adamw-lr/--lr: must be a finite number greater than 0"),
    (["--muon-lr", "-0.1"], "--muon-lr: must be a finite number greater than 0"),
    (["--device", "tpu"], "--device: invalid choice: 'tpu'"),
    (["--min-accuracy", "101"], "--min-accuracy: must be between 0 and 100"),
    (["--seed", "x"], "--seed: invalid int value: 'x'"),
]


def test_bad_option_exits_two_as_a_subprocess() -> None:
    result = run_script("train.py", "--epochs", "0")
    assert result.returncode == 2
    assert "train.py: error: argument --epochs: must be greater than 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), BAD_OPTIONS)
def test_bad_options_exit_two(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        train.main(args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_exits_two_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name, value in offline_env().items():
        monkeypatch.setenv(name, value)
    out_dir = tmp_path / "out"
    assert train.main(["--data-dir", str(tmp_path / "empty"), "--out-dir", str(out_dir), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: MNIST not found in {tmp_path / 'empty' / 'MNIST' / 'raw'}")
    for name in MNIST_FILES:
        assert name in lines[0]
    assert not out_dir.exists()


def test_run_records_its_loss_curve(trained: train.TrainResult) -> None:
    metrics = trained.metadata["metrics"]
    curve = metrics["train_loss_curve"]
    assert len(curve) == train.CURVE_POINTS
    assert all(0 < value < 10 for value in curve)
    assert curve[0] > curve[-1]
    assert sum(curve) / len(curve) == pytest.approx(metrics["train_loss"], rel=0.05)


def test_short_epoch_curve_has_one_point_per_step() -> None:
    images, labels = torch.randn(50, 1, 28, 28), torch.arange(50) % 10
    fitted = train.fit(recipe_for(2, batch_size=10), images.contiguous(memory_format=torch.channels_last), labels)
    assert len(fitted.loss_curve) == 10
    assert sum(fitted.loss_curve[5:]) / 5 == pytest.approx(fitted.train_loss)


def test_divergence_stops_with_one_line_and_no_checkpoint(
    data_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_dir = tmp_path / "out"
    args = ["--lr", "1e6", "--muon-lr", "1e6", "--data-dir", data_dir, "--out-dir", str(out_dir), "--no-progress"]
    assert train.main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"error: training diverged: the loss is (nan|inf) by step \d+ of 313 in epoch 1/1; "
        r"try a lower --lr",
        lines[0],
    )
    assert not out_dir.exists()


def test_output_folder_that_is_a_file_fails_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    taken = tmp_path / "models"
    taken.write_text("not a folder")
    assert train.main(["--out-dir", str(taken), "--data-dir", str(tmp_path / "no-data"), "--no-progress"]) == 1
    assert capsys.readouterr().err == f"error: cannot write into {taken}: {taken} is a file, not a folder\n"
    assert taken.read_text() == "not a folder"


def test_full_disk_while_saving_fails_cleanly(
    data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "mnist_cnn_20260101-000000.pt").write_bytes(b"an earlier checkpoint")
    untrained = train.FitResult(MnistCNN(), 2.3, 10.0, 1.0, [2.3])
    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: untrained)

    def full_disk(self: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    assert train.main(["--data-dir", data_dir, "--validation", "100", "--out-dir", str(tmp_path), "--no-progress"]) == 1
    assert capsys.readouterr().err == f"error: cannot save the checkpoint in {tmp_path}: No space left on device\n"
    assert [path.name for path in tmp_path.iterdir()] == ["mnist_cnn_20260101-000000.pt"]
    assert (tmp_path / "mnist_cnn_20260101-000000.pt").read_bytes() == b"an earlier checkpoint"


def test_bad_mnist_file_exits_two_without_writing(
    bad_labels_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out_dir = tmp_path / "out"
    assert train.main(["--data-dir", bad_labels_dir, "--out-dir", str(out_dir), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1 and BAD_LABELS_MESSAGE in error
    assert not out_dir.exists()


def test_validation_run_never_reads_the_test_files(
    data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    raw = tmp_path / "train-only" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES[:2]:
        link_or_copy(Path(data_dir).resolve() / "MNIST" / "raw" / name, raw / name)
    for name, value in offline_env().items():
        monkeypatch.setenv(name, value)
    trained_on, fit = [], train.fit

    def fit_on_a_slice(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, *args: object, **kwargs: object):
        trained_on.append(len(images))  # the split is what this test checks: train on a slice, in seconds
        return fit(recipe, images[:2000], labels[:2000], *args, **kwargs)

    monkeypatch.setattr(train, "fit", fit_on_a_slice)
    out_dir = tmp_path / "out"
    args = ["--validation", "10000", "--data-dir", str(raw.parents[1]), "--out-dir", str(out_dir), "--no-progress"]
    assert train.main(args) == 0
    printed = capsys.readouterr().out
    assert "validation accuracy" in printed and "10,000 images" in printed
    metrics = json.loads(next(out_dir.glob("*.json")).read_text())["metrics"]
    assert trained_on == [50_000] and metrics["train_images"] == 50_000
    assert metrics["split"] == "validation" and metrics["validation_images"] == 10_000
    assert "test_accuracy" not in metrics


@pytest.mark.parametrize(("precision", "autocast"), [("fp32", None), ("bf16", "bfloat16")])
def test_a_run_records_and_prints_its_precision(
    precision: str,
    autocast: str | None,
    data_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    fit = train.fit
    used = []

    def fit_on_a_slice(recipe: Recipe, images: torch.Tensor, labels: torch.Tensor, *rest: object, **named: object):
        used.append(named["precision"])
        return fit(recipe, images[:960], labels[:960], *rest, **named)

    monkeypatch.setattr(train, "fit", fit_on_a_slice)
    args = ["--validation", "1000", "--precision", precision, "--data-dir", data_dir, "--out-dir", str(tmp_path)]
    assert train.main([*args, "--no-progress"]) == 0
    config = json.loads(next(tmp_path.glob("*.json")).read_text())["config"]
    assert used == [precision] and config["precision"] == precision and config["autocast"] == autocast
    assert f"images/s, {autocast or 'float32'})" in capsys.readouterr().out
    assert f"(--precision {precision})" in next(tmp_path.glob("*.md")).read_text()


@pytest.mark.parametrize("views", [1, 5])
def test_a_run_scores_with_as_many_views_as_its_recipe(
    views: int, data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit = train.fit
    monkeypatch.setattr(
        train,
        "fit",
        lambda recipe, images, labels, *rest, **named: fit(recipe, images[:960], labels[:960], *rest, **named),
    )
    args = ["--validation", "2000", "--set", f"test_time_views={views}", "--data-dir", data_dir]
    assert train.main([*args, "--out-dir", str(tmp_path), "--no-progress"]) == 0
    metrics = json.loads(next(tmp_path.glob("*.json")).read_text())["metrics"]
    assert metrics["validation_views"] == views
    same = metrics["validation_loss"] == metrics["validation_loss_one_view"]
    assert same == (views == 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "learning_rate=0.1"], "expected FIELD=VALUE with FIELD one of"),
        (["--set", "full_resolution=maybe"], "full_resolution takes true or false"),
        (["--set", "batch_size=1.5"], "invalid literal for int()"),
        (["--set", "muon_momentum=1.5"], "muon_momentum must be in [0, 1), got 1.5"),
        (["--set", "test_time_views=3"], "test_time_views must be one of (1, 5), got 3"),
    ],
)
def test_bad_recipe_overrides_exit_two(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        train.main(args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_validation_as_large_as_the_training_set_exits_two(data_dir: str, capsys: pytest.CaptureFixture) -> None:
    assert train.main(["--validation", "60000", "--data-dir", data_dir, "--no-progress"]) == 2
    assert "leaves no training image" in capsys.readouterr().err


@pytest.mark.parametrize("loss", [float("nan"), float("inf")])
def test_a_loss_that_is_not_a_finite_number_is_divergence(loss: float) -> None:
    def step_with_loss(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(len(targets), 10), torch.tensor(loss)

    images, labels = torch.zeros(64, 1, 28, 28), torch.arange(64) % 10
    with pytest.raises(train.DivergenceError, match=f"the loss is {loss} by step 1 of 4 in epoch 1/1"):
        args = (Recipe(batch_size=16), torch.Generator(), torch.ones(64), None, "epoch 1/1", False)
        train.train_epoch(step_with_loss, images, labels, *args)

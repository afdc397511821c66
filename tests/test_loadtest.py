"""tools/loadtest.py: a short load on a real local server is all answered 200; the figures count and rank right."""

import pytest
import torch

import serve
import train
from mnist_cnn.checkpoint import load_checkpoint
from tools import loadtest


def test_short_load_is_all_answered(trained: train.TrainResult) -> None:
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    figures = loadtest.run_load(model, requests=24, threads=4)
    assert figures["requests"] == figures["ok"] == 24 and figures["threads"] == 4


def test_figures_count_every_request_and_read_the_latencies_right(
    trained: train.TrainResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answered(address: tuple[str, int], body: bytes, count: int) -> list[tuple[int, float]]:
        return [(200 if index % 5 else 503, (index + 1) / 1000) for index in range(count)]  # 1 ms, 2 ms, ...

    monkeypatch.setattr(loadtest, "timed_requests", answered)
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    figures = loadtest.run_load(model, requests=100, threads=1)
    assert figures["requests"] == 100 and figures["ok"] == 80  # every fifth answered 503
    assert figures["p50_ms"] == pytest.approx(50.5) and figures["p95_ms"] == pytest.approx(95.05)
    assert figures["max_ms"] == pytest.approx(100.0)


def test_drawn_seven_is_a_png_the_model_reads_as_seven(trained: train.TrainResult) -> None:
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    assert serve.classify(model, loadtest.drawn_seven())["digit"] == 7

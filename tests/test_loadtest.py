"""tools/loadtest.py: a short load on a real local server is all answered 200, with consistent latency figures."""

import torch

import serve
import train
from mnist_cnn.checkpoint import load_checkpoint
from tools import loadtest


def test_short_load_is_all_answered(trained: train.TrainResult) -> None:
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    figures = loadtest.run_load(model, requests=24, threads=4)
    assert figures["requests"] == figures["ok"] == 24
    assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert figures["per_second"] > 0


def test_drawn_seven_is_a_png_the_model_reads_as_seven(trained: train.TrainResult) -> None:
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    assert serve.classify(model, loadtest.drawn_seven())["digit"] == 7

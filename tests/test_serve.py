"""serve.py: the page and the endpoint over real HTTP, every bad request, the command line, and drawing in Chromium."""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image

import serve
import train
from conftest import ROOT, as_pixels, require
from mnist_cnn.checkpoint import load_checkpoint
from mnist_cnn.data import load_mnist
from mnist_cnn.inference import ShiftAveraged, with_views
from model import MnistCNN
from tools import pagebench
from tools.loadtest import SEVEN_STROKE


@pytest.fixture(scope="module")
def address(trained: train.TrainResult) -> Iterator[tuple[str, int]]:
    """A real server on a free port of this machine, serving the session's checkpoint, stopped afterwards."""
    model, _ = load_checkpoint(trained.checkpoint_path, torch.device("cpu"))
    server = serve.make_server(with_views(model, 5), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[:2]
    server.shutdown()
    server.server_close()


def request(
    address: tuple[str, int], method: str, path: str, body: bytes | None = None, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    """Send one request; return the status, the headers and the body of the answer."""
    connection = http.client.HTTPConnection(*address, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def png_of_test_digit(data_dir: str, index: int) -> tuple[bytes, int]:
    """Return a PNG of one MNIST test digit, light on dark as the page draws, and its label."""
    images, labels = load_mnist(data_dir, train=False, device=torch.device("cpu"))
    pixels = as_pixels(images[index, 0]).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((280, 280)).save(buffer, "PNG")
    return buffer.getvalue(), labels[index].item()


def test_page_is_served_with_its_test_hooks(address: tuple[str, int]) -> None:
    status, headers, body = request(address, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    for hook in ("pad", "clear", "prediction", "probabilities"):
        assert f'data-testid="{hook}"' in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_png_of_a_digit_is_recognised(address: tuple[str, int], data_dir: str, index: int) -> None:
    png, label = png_of_test_digit(data_dir, index)
    status, headers, body = request(address, "POST", "/predict", png, {"Content-Type": "image/png"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert answer["digit"] == label
    assert len(answer["probabilities"]) == 10 and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert max(answer["probabilities"]) == answer["probabilities"][label]


BAD_REQUESTS = [
    ("POST", "/predict", b"", 400, "the body is empty"),
    ("POST", "/predict", b"this is not a picture", 400, "not an image Pillow can read"),
    ("POST", "/predict", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 400, "cannot read it"),
    ("GET", "/predict", None, 405, "POST a PNG"),
    ("PUT", "/predict", b"x", 405, "PUT is not allowed"),
    ("DELETE", "/", None, 405, "DELETE is not allowed"),
    ("POST", "/", b"x", 405, "GET / for the page"),
    ("GET", "/nowhere", None, 404, "no such page"),
    ("POST", "/elsewhere", b"x", 404, "no such endpoint"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_json_error(
    address: tuple[str, int], method: str, path: str, body: bytes | None, status: int, message: str
) -> None:
    answered, _, content = request(address, method, path, body, {"Content-Type": "image/png"})
    assert answered == status
    assert message in json.loads(content)["error"]
    assert request(address, "GET", "/")[0] == 200


def test_a_blank_drawing_holds_no_digit(address: tuple[str, int]) -> None:
    buffer = io.BytesIO()
    Image.new("L", (280, 280), 0).save(buffer, "PNG")
    status, _, body = request(address, "POST", "/predict", buffer.getvalue(), {"Content-Type": "image/png"})
    assert status == 400 and "no digit found" in json.loads(body)["error"]


def test_an_oversized_body_is_refused_without_being_read(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 50000000\r\n\r\n"
        )
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    text = answer.decode()
    assert text.startswith("HTTP/1.0 413") or text.startswith("HTTP/1.1 413")
    assert "is over 1,000,000 bytes" in text
    assert request(address, "GET", "/")[0] == 200


def serve_process(*args: str) -> subprocess.Popen:
    """Start serve.py with args in a subprocess whose output is read as text."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT, which Windows cannot send to one process")
def test_command_line_serves_until_ctrl_c(trained: train.TrainResult) -> None:
    process = serve_process("--checkpoint", str(trained.checkpoint_path), "--port", "0")
    try:
        first = process.stdout.readline()
        assert first.startswith("serving the drawing page on http://127.0.0.1:")
        port = int(first.split(":")[2].split("/")[0])
        assert request(("127.0.0.1", port), "GET", "/")[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0
    assert out.strip() == "stopped"
    assert "Traceback" not in err and '"GET / HTTP/1.1" 200' in err


def test_port_in_use_and_bad_checkpoint_exit_two(trained: train.TrainResult, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = serve_process("--checkpoint", str(trained.checkpoint_path), "--port", str(port))
        missing = serve_process("--checkpoint", str(tmp_path / "missing.pt"))
        (_, busy_error), (_, missing_error) = busy.communicate(timeout=60), missing.communicate(timeout=60)
    assert busy.returncode == 2
    assert busy_error.startswith(f"error: cannot listen on 127.0.0.1:{port}: ") and busy_error.count("\n") == 1
    assert missing.returncode == 2 and "does not exist" in missing_error and missing_error.count("\n") == 1


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_a_port_out_of_range_exits_two_with_one_line(port: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        serve.main(["--port", port])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.endswith(f" error: argument --port: must be between 0 and 65535, got {port}")


@pytest.mark.parametrize(("views", "served"), [([], MnistCNN), (["--views", "5"], ShiftAveraged)])
def test_the_server_reads_as_many_views_as_the_checkpoints_recipe(
    one_view_checkpoint: Path, views: list[str], served: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = []

    class Stopped:
        server_address = ("127.0.0.1", 0)

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    monkeypatch.setattr(serve, "make_server", lambda model, host, port: made.append(model) or Stopped())
    assert serve.main(["--checkpoint", str(one_view_checkpoint), "--port", "0", *views]) == 0
    assert type(made[0]) is served


DIGIT_STROKES = {"1": [[(150, 50), (146, 140), (140, 235)]], "7": [SEVEN_STROKE]}


@pytest.mark.slow
def test_drawing_in_a_real_browser(address: tuple[str, int], tmp_path: Path) -> None:
    require("Chromium or Chrome (apt-get install chromium)", pagebench.chromium_path() is not None)
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=pagebench.chromium_path(), args=pagebench.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 760, "height": 600})
            page.goto(f"http://{address[0]}:{address[1]}/")
            page.wait_for_selector("main[data-ready]")
            assert page.get_attribute("main", "data-mode") == "server"  # no model.json here: the server predicts
            prediction = page.get_by_test_id("prediction")
            assert prediction.text_content() == ""
            for digit, strokes in DIGIT_STROKES.items():
                pagebench.draw(page, strokes)
                sync_api.expect(prediction).to_have_text(digit, timeout=10_000)
                assert page.get_by_test_id("probabilities").locator("li").count() == 10
                page.screenshot(path=str(Path(os.environ.get("SCREENSHOT_DIR", tmp_path)) / f"draw-{digit}.png"))
                page.get_by_test_id("clear").click()
                sync_api.expect(prediction).to_have_text("", timeout=5_000)
        finally:
            browser.close()

"""Serve a local page that recognises a digit drawn with a mouse, a finger or a pen: python serve.py.

GET / serves web/draw.html; POST /predict takes a PNG and answers {"digit": d, "probabilities": [10 numbers]},
preparing the image with mnist_cnn/digit_image.py exactly as predict.py does.
"""

import argparse
import io
import json
import signal
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
from torch import nn

from mnist_cnn.checkpoint import load_checkpoint, newest_checkpoint, views_to_read
from mnist_cnn.cli import BadInput, add_views_option, port_number, reports_errors
from mnist_cnn.digit_image import ImageError, prepare_file
from mnist_cnn.inference import digit_probabilities, with_views

PAGE = Path(__file__).parent / "web" / "draw.html"
MAX_BODY_BYTES = 1_000_000
PREDICT_PATH = "/predict"


def classify(model: nn.Module, body: bytes) -> dict:
    """Return the digit and the ten probabilities of the image file in body; raise ImageError when it holds none."""
    probabilities = digit_probabilities(model, prepare_file(io.BytesIO(body)).unsqueeze(0))[0]
    return {"digit": int(probabilities.argmax()), "probabilities": [round(p, 6) for p in probabilities.tolist()]}


def make_handler(model: nn.Module, page: bytes, log_requests: bool) -> type[BaseHTTPRequestHandler]:
    """Return a request handler class that serves page at / and classifies PNGs posted to /predict with model."""

    class DigitHandler(BaseHTTPRequestHandler):
        """One page, one endpoint; every other request gets a JSON error, never a traceback."""

        server_version = "mnist-cnn"

        def send_body(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "POST" if self.path == PREDICT_PATH else "GET")
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: HTTPStatus, payload: dict) -> None:
            self.send_body(status, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            if self.path == "/":
                self.send_body(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == PREDICT_PATH:
                self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "POST a PNG to /predict"})
            else:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

        def do_POST(self) -> None:
            if self.path != PREDICT_PATH:
                if self.path == "/":
                    self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "GET / for the page"})
                else:
                    self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                length = -1
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                self.send_json(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": f"the body is over {MAX_BODY_BYTES:,} bytes"}
                )
                return
            if length <= 0:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": "the body is empty: POST the drawing as a PNG"})
                return
            body = self.rfile.read(length)
            try:
                self.send_json(HTTPStatus.OK, classify(model, body))
            except ImageError as error:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})

        def refuse_method(self) -> None:
            self.close_connection = True
            self.send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} is not allowed here"})

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if log_requests:
                super().log_request(code, size)

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except Exception as error:
                self.log_error("could not answer %s %s: %s", self.command, self.path, error)
                self.close_connection = True

    return DigitHandler


class DrawingServer(ThreadingHTTPServer):
    """A threading HTTP server whose request threads end with it. On Windows it does without SO_REUSEADDR, which
    there would let it bind a port that another program listens on instead of failing.
    """

    daemon_threads = True
    allow_reuse_address = sys.platform != "win32"


def make_server(model: nn.Module, host: str, port: int, log_requests: bool = True) -> DrawingServer:
    """Return a server bound to host:port (0 picks a free port) that serves the page and model.

    Each request is logged as one line on stderr unless log_requests is false.
    """
    return DrawingServer((host, port), make_handler(model, PAGE.read_bytes(), log_requests))


def stop(signum: int, frame: object) -> None:
    """Stop serving on SIGTERM as on Ctrl-C."""
    raise KeyboardInterrupt


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run serve.py with argv; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: the newest in models/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=port_number, default=8000, help="port to listen on, 0: any free (default: 8000)")
    add_views_option(parser)
    args = parser.parse_args(argv)
    model, metadata = load_checkpoint(args.checkpoint or newest_checkpoint(), torch.device("cpu"))
    try:
        server = make_server(with_views(model, views_to_read(args.views, metadata)), args.host, args.port)
    except OSError as error:
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}") from None
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)
    host, port = server.server_address[:2]
    print(f"serving the drawing page on http://{host}:{port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

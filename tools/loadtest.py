"""Measure serve.py's POST /predict under load: a server on a free local port, many requests from several threads.

Run it from the repository's root as python -m tools.loadtest. Prints how many requests were answered
200, the throughput and the p50, p95 and largest latency.
"""

import argparse
import http.client
import io
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from mnist_cnn.checkpoint import load_checkpoint, newest_checkpoint, views_to_read
from mnist_cnn.cli import add_views_option, positive_int, reports_errors
from mnist_cnn.inference import with_views
from serve import PREDICT_PATH, make_server

PAD_SIDE = 280
SEVEN_STROKE = [(75, 60), (205, 60), (160, 140), (120, 235)]  # a 7 as the page's pad draws it, in pad pixels


def drawn_seven() -> bytes:
    """Return a PNG of a 7 drawn white on black the way the page sends one."""
    image = Image.new("L", (PAD_SIDE, PAD_SIDE), 0)
    ImageDraw.Draw(image).line(SEVEN_STROKE, fill=255, width=20, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def timed_requests(address: tuple[str, int], body: bytes, count: int) -> list[tuple[int, float]]:
    """Send count requests over one keep-alive connection; return (status, seconds) for each."""
    connection = http.client.HTTPConnection(*address, timeout=60)
    results = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            connection.request("POST", PREDICT_PATH, body=body, headers={"Content-Type": "image/png"})
            response = connection.getresponse()
            response.read()
            results.append((response.status, time.perf_counter() - start))
    finally:
        connection.close()
    return results


def run_load(model: torch.nn.Module, requests: int, threads: int) -> dict:
    """Serve model on a free local port, send requests from threads at once; return the figures."""
    server = make_server(model, "127.0.0.1", 0, log_requests=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    body = drawn_seven()
    shares = [requests // threads + (1 if index < requests % threads else 0) for index in range(threads)]
    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            parts = pool.map(lambda count: timed_requests(server.server_address[:2], body, count), shares)
            results = [result for part in parts for result in part]
        seconds = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    latencies = sorted(latency for _, latency in results)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(results),
        "ok": sum(status == 200 for status, _ in results),
        "threads": threads,
        "seconds": seconds,
        "per_second": len(results) / seconds,
        "p50_ms": 1000 * quantiles[49],
        "p95_ms": 1000 * quantiles[94],
        "max_ms": 1000 * latencies[-1],
        "torch_threads": torch.get_num_threads(),
    }


@reports_errors()
def main(argv: list[str] | None = None) -> int:
    """Run loadtest.py with argv; return the exit status (1 when any request was not answered 200)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="checkpoint to serve (default: the newest in models/)")
    parser.add_argument("--requests", type=positive_int, default=500, help="requests in all (default: 500)")
    parser.add_argument("--threads", type=positive_int, default=8, help="client threads at once (default: 8)")
    add_views_option(parser)
    args = parser.parse_args(argv)
    model, metadata = load_checkpoint(args.checkpoint or newest_checkpoint(), torch.device("cpu"))
    figures = run_load(with_views(model, views_to_read(args.views, metadata)), args.requests, args.threads)
    print(f"requests      {figures['ok']} of {figures['requests']} answered 200, from {figures['threads']} threads")
    print(f"throughput    {figures['per_second']:.0f} requests/s ({figures['seconds']:.1f} s)")
    print(
        f"latency       p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.1f} ms"
    )
    return 0 if figures["ok"] == figures["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Load test for ``fractalad-edge serve``: throughput and latency from concurrent clients, then malformed requests.

Starts a local Ray instance and serves MODEL on 127.0.0.1 (or targets a running server with
--url), sends --requests images from --clients threads (a bounded loop, localhost only),
times in-process ``Predictor.predict`` on the same images for comparison, then sends
--malformed bad requests (8 kinds, cycled) and checks that each gets a 4xx and that the server still answers.

    python scripts/serve_load.py MODEL --images DIR [--requests 1000] [--clients 8] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def post(url: str, body: bytes, timeout: float = 120.0) -> tuple[int, float]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/octet-stream"}, method="POST")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, time.perf_counter() - started


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2)}


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def malformed_bodies(valid: bytes, count: int, limit: int) -> list[tuple[str, bytes]]:
    """Bad requests of several kinds, cycled: text, truncated images, empty, unknown model, oversize, pixel bomb."""
    rng = np.random.default_rng(0)
    kinds = [
        ("predict", b"not an image at all"),
        ("predict", valid[: len(valid) // 3]),
        ("predict", b""),
        ("predict", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()),
        ("unknown", valid),
        ("predict", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64),
        ("predict", b"x" * (limit + 1)),
        ("predict", png_declaring(40_000, 40_000)),  # 1 600 MP declared in a 1 kB body
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--images", type=Path, required=True, help="Folder (searched recursively) of PNG/JPEG images to send.")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--malformed", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--port", type=int, default=8321)
    parser.add_argument("--url", default=None, help="A running server's base URL (default: start one here).")
    parser.add_argument("--inprocess", type=int, default=100, help="Predictor.predict calls timed in this process.")
    parser.add_argument("--max-body-bytes", type=int, default=8 * 1024**2, help="The server's body limit (serve's is 32 MiB).")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from fractalad_edge.data.images import IMAGE_SUFFIXES, read_image
    from fractalad_edge.predictor import Predictor

    paths = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:64]
    bodies = [p.read_bytes() for p in paths]
    limit = args.max_body_bytes
    ray = None
    if args.url is None:
        import ray

        from fractalad_edge.distributed.serve import ServeOptions, start_server

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        options = ServeOptions(port=args.port, replicas=args.replicas, max_batch_size=args.max_batch_size, max_body_bytes=limit)
        base = start_server({"model": args.model}, options)
    else:
        base = args.url.rstrip("/")
    url = f"{base}/predict/model"

    for body in bodies[:4]:  # warm-up: model loaded and first batch run
        post(url, body)
    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        outcomes = list(pool.map(lambda i: post(url, bodies[i % len(bodies)]), range(args.requests)))
    wall = time.perf_counter() - started
    errors = sum(status != 200 for status, _ in outcomes)
    served = {"requests": args.requests, "clients": args.clients, "errors": errors, "seconds": round(wall, 2),
              "images_per_second": round(args.requests / wall, 2), **percentiles([s for _, s in outcomes])}

    with Predictor.load(args.model, channel_order="rgb") as predictor:
        images = [read_image(p) for p in paths]
        for image in images[:4]:
            predictor.predict(image)
        times = []
        for i in range(args.inprocess):
            t = time.perf_counter()
            predictor.predict(images[i % len(images)])
            times.append(time.perf_counter() - t)
    inprocess = {"calls": args.inprocess, "images_per_second": round(len(times) / sum(times), 2), **percentiles(times)}

    statuses = []
    for route, body in malformed_bodies(bodies[0], args.malformed, limit):
        target = url if route == "predict" else f"{base}/predict/not-a-model"
        statuses.append(post(target, body)[0])
    after_status, _ = post(url, bodies[0])
    health = json.loads(urllib.request.urlopen(f"{base}/health", timeout=30).read())
    malformed = {"sent": len(statuses), "all_4xx": all(400 <= s < 500 for s in statuses),
                 "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
                 "valid_request_after": after_status, "health_after": health["status"]}

    report = {"model": str(args.model), "serve": served, "in_process_predict": inprocess, "malformed": malformed,
              "replicas": args.replicas, "max_batch_size": args.max_batch_size, "cpus": os.cpu_count()}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    if ray is not None:
        from ray import serve

        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()

"""An HTTP endpoint for cameras and stations: Ray Serve in front of one or more models.

Routes (all answers JSON):

- ``POST /predict/<name>`` (or ``POST /predict`` when one model is served): the body is an
  encoded image (PNG, JPEG, ...) as raw bytes, or a multipart form with the image as its
  first file. ``?mask=1`` adds the predicted mask as a base64 PNG.
- ``GET /health``: ``{"status": "ok", "models": [...]}``.
- ``GET /models``: what each name serves (category, format, precision, version).

Each model is its own deployment with ``replicas`` replicas; requests that arrive together
are scored as one batch (``@serve.batch``). Images are decoded with the package's own
reader (:func:`fractalad_edge.data.images.decode_image`), so its checks apply: the pixel
limit read from the header before decoding (``max_pixels``), truncation, corrupt JPEG data.
A bad request (not an image, a body or image too large, unknown model, wrong method) gets
a 4xx with a one-line reason and the server keeps serving.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fractalad_edge.data.images import decode_image, max_image_pixels
from fractalad_edge.distributed.cluster import import_ray, ray_session
from fractalad_edge.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    cpus_per_replica: float = 1.0
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    max_body_bytes: int = 32 * 1024**2
    max_pixels: int | None = None  # decoded size limit; None: FRACTALAD_MAX_IMAGE_PIXELS or 200 MP
    runtime: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        checks = {
            "port": 0 < self.port < 65536,
            "replicas": self.replicas >= 1,
            "cpus_per_replica": self.cpus_per_replica > 0,
            "max_batch_size": self.max_batch_size >= 1,
            "batch_wait_ms": self.batch_wait_ms >= 0,
            "max_body_bytes": self.max_body_bytes >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"serve option {name}={getattr(self, name)!r} is out of range"
                raise ConfigError(msg)
        if self.max_pixels is not None:
            max_image_pixels(self.max_pixels)  # a ConfigError naming the value


def model_version(metadata: Any) -> str:
    """A short content hash of the model files: changes whenever the served model does."""
    digest = hashlib.sha256("".join(sorted(f.sha256 for f in metadata.files)).encode()).hexdigest()
    return digest[:12]


def check_models(models: Mapping[str, str | Path]) -> dict[str, dict[str, Any]]:
    """Validate names and model directories before anything starts; return what each name serves."""
    from fractalad_edge.artifact import read_metadata

    if not models:
        msg = "serve needs at least one model directory"
        raise ConfigError(msg)
    described = {}
    for name, path in models.items():
        if not _NAME.match(name):
            msg = f"model name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.'"
            raise ConfigError(msg)
        metadata = read_metadata(Path(path))
        described[name] = {
            "model": name,
            "version": model_version(metadata),
            "category": metadata.category,
            "format": metadata.format.value,
            "precision": metadata.precision.value,
            "raw_threshold": metadata.calibration.image_threshold if metadata.calibration else None,
            "score_space": metadata.score_space.value,  # the units of raw_threshold and raw_score
        }
    return described


class ModelReplica:
    """One loaded Predictor; decodes each request, then scores the requests that arrive together as one batch."""

    def __init__(self, path: str, info: dict[str, Any], options: ServeOptions, max_pixels: int) -> None:
        from fractalad_edge.predictor import Predictor

        self.predictor = Predictor.load(path, runtime=options.runtime, device=options.device, channel_order="rgb")
        self.info = {**info, "runtime": self.predictor.runtime}
        self.max_pixels = max_pixels
        serve = _serve()
        self._batched = serve.batch(max_batch_size=options.max_batch_size, batch_wait_timeout_s=options.batch_wait_ms / 1000)(
            self._score_batch
        )

    async def _score_batch(self, images: list[np.ndarray]) -> list[Any]:
        return self.predictor.predict_batch(images)

    async def __call__(self, data: bytes, want_mask: bool) -> tuple[int, dict[str, Any]]:
        from fractalad_edge.errors import FractalADError, ImageTooLargeError

        started = time.perf_counter()
        try:  # the file reader's checks: header size limit before decoding, truncation, corrupt JPEG
            image = decode_image(data, source="the request body", max_pixels=self.max_pixels)
        except ImageTooLargeError as exc:
            return 413, {"error": _one_line(exc)}
        except FractalADError as exc:
            return 400, {"error": _one_line(exc)}
        result = await self._batched(image)
        answer = {
            **self.info,
            "pred_score": round(result.pred_score, 6),
            "decision": "anomalous" if result.pred_label else "normal",
            "pred_label": result.pred_label,
            "threshold": 0.5,
            "raw_score": round(result.raw_score, 6),
            "anomalous_pixels": int(result.pred_mask.sum()),
            "height": int(image.shape[0]),
            "width": int(image.shape[1]),
            "server_ms": round((time.perf_counter() - started) * 1000, 3),
        }
        if want_mask:
            ok, png = cv2.imencode(".png", result.pred_mask.astype(np.uint8) * 255)
            answer["mask_png_base64"] = base64.b64encode(png.tobytes()).decode("ascii") if ok else None
        return 200, answer


class Gateway:
    """The HTTP ingress: routes, limits and request parsing; scoring goes to the model deployments."""

    def __init__(self, handles: dict[str, Any], infos: dict[str, dict[str, Any]], max_body_bytes: int) -> None:
        self.handles = handles
        self.infos = infos
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        path = request.url.path.rstrip("/") or "/"
        if path == "/health":
            return JSONResponse({"status": "ok", "models": sorted(self.handles)})
        if path == "/models":
            return JSONResponse({"models": list(self.infos.values())})
        if path != "/predict" and not path.startswith("/predict/"):
            return _error(404, f"no route {path}; use POST /predict/<model>, GET /health or GET /models")
        if request.method != "POST":
            return _error(405, f"{request.method} is not allowed on {path}; send the image with POST")
        name = path[len("/predict/") :] if path.startswith("/predict/") else None
        if name is None:
            if len(self.handles) != 1:
                return _error(404, f"several models are served ({', '.join(sorted(self.handles))}); POST to /predict/<model>")
            name = next(iter(self.handles))
        if name not in self.handles:
            return _error(404, f"unknown model {name!r}; served: {', '.join(sorted(self.handles))}")
        body = bytearray()
        received = 0
        async for chunk in request.stream():
            # An oversize body is read to its end (up to 4x the limit) without being kept, so the
            # client, still sending, gets the 413 instead of a reset connection.
            received += len(chunk)
            if received <= self.max_body_bytes:
                body.extend(chunk)
            elif received > 4 * self.max_body_bytes:
                break
        if received > self.max_body_bytes:
            return _error(413, f"the body has more than {self.max_body_bytes} bytes, the limit; send a smaller image")
        if not body:
            return _error(400, "the body is empty; send an encoded image (PNG, JPEG, ...) as raw bytes or multipart")
        content_type = request.headers.get("content-type", "")
        data: bytes | None = bytes(body)
        if content_type.startswith("multipart/"):
            data = _first_file(content_type, data)
            if data is None:
                return _error(400, "the multipart form holds no file part; send the image as a file field")
        want_mask = request.query_params.get("mask", "0").lower() in ("1", "true", "yes")
        status, answer = await self.handles[name].remote(data, want_mask)
        return JSONResponse(answer, status_code=status)


def _serve() -> Any:
    import_ray()  # a one-line error when Ray is missing
    from ray import serve

    return serve


def _first_file(content_type: str, body: bytes) -> bytes | None:
    """The first part of a multipart body that carries a payload (stdlib parser, no extra package)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if payload:
            return payload
    return None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _error(status: int, reason: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": reason}, status_code=status)


def build_app(models: Mapping[str, str | Path], options: ServeOptions) -> Any:
    """The Serve application: one deployment per model behind one HTTP gateway."""
    serve = _serve()
    infos = check_models(models)
    handles = {}
    for name, path in models.items():
        deployment = serve.deployment(
            ModelReplica,
            name=f"model-{name}",
            num_replicas=options.replicas,
            ray_actor_options={"num_cpus": options.cpus_per_replica},
            max_ongoing_requests=max(2 * options.max_batch_size, 8),
        )
        # The driver's pixel limit (its environment), not each replica's.
        handles[name] = deployment.bind(str(Path(path).resolve()), infos[name], options, max_image_pixels(options.max_pixels))
    gateway = serve.deployment(Gateway, name="gateway", ray_actor_options={"num_cpus": 0})
    return gateway.bind(handles, infos, options.max_body_bytes)


def start_server(models: Mapping[str, str | Path], options: ServeOptions, *, name: str = "fractalad") -> str:
    """Deploy on the Ray instance this process is connected to; return the base URL. Returns once ready."""
    serve = _serve()
    app = build_app(models, options)
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(app, name=name, route_prefix="/")
    return f"http://{options.host}:{options.port}"


def serve_models(
    models: Mapping[str, str | Path],
    options: ServeOptions,
    *,
    address: str | None = None,
    echo: Any = print,
) -> None:
    """Serve until interrupted (Ctrl-C), then take the deployments down."""
    check_models(models)  # fail before a cluster starts
    with ray_session(address):
        url = start_server(models, options)
        echo(f"serving {', '.join(models)} at {url} (POST {url}/predict/<model>, GET {url}/health)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            echo("stopping")
        finally:
            _serve().shutdown()

"""Ray engine: train-many, predict --engine ray, serve, on one small local Ray instance.

Marked ``ray`` (``pytest -m "not ray"`` is the fast path without them); skipped where Ray is
not installed. The instance (2 CPUs, no dashboard, a small object store) is one
session-scoped fixture, started only when a test here needs it, and shared by all of them.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

from fractalad_edge.data.demo import make_demo_dataset  # noqa: E402
from fractalad_edge.distributed.batch_predict import RayPredictOptions, predict_files_ray  # noqa: E402
from fractalad_edge.distributed.serve import ServeOptions, start_server  # noqa: E402
from fractalad_edge.distributed.train_many import SUMMARY_JSON, SUMMARY_MD, TrainManyOptions, train_many  # noqa: E402
from fractalad_edge.cli import app  # noqa: E402
from fractalad_edge.errors import ConfigError, OutputExistsError  # noqa: E402
from fractalad_edge.inference import RESULTS_FILENAME, predict_files  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")]


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for the session; the library functions reuse it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- train-many

TINY = TrainManyOptions(steps=2, batch_size=2, input_size=64, checkpoint_every=1)


@pytest.fixture(scope="module")
def categories_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny MVTec-layout categories and one whose training folder holds no image."""
    root = tmp_path_factory.mktemp("categories")
    for name in ("part_a", "part_b"):
        make_demo_dataset(root / name, size=64, train=4, test_good=2, test_defect=2)
    (root / "broken" / "train" / "good").mkdir(parents=True)
    (root / "broken" / "train" / "good" / "notes.txt").write_text("not an image")
    return root


def test_train_many_trains_each_category_reports_failures_and_skips_finished_ones(
    ray_instance, categories_root: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    results = train_many(categories_root, tmp_path, TINY, echo=lines.append, poll_seconds=0.5)
    by_name = {r.category: r for r in results}
    assert [r.category for r in results] == ["broken", "part_a", "part_b"]
    for name in ("part_a", "part_b"):
        result = by_name[name]
        assert result.status == "trained" and result.steps == 2 and result.attempts == 1
        assert set(result.metrics) == {"image_auroc", "pixel_auroc", "aupro"}
        assert (tmp_path / name / "metadata.json").is_file()
        assert (tmp_path / name / "eval" / "metrics.json").is_file()
    # An SDK error (no training images) is reported once, not retried; the others still train.
    assert by_name["broken"].status == "failed" and by_name["broken"].attempts == 1
    assert "No training images" in by_name["broken"].error
    summary = json.loads((tmp_path / SUMMARY_JSON).read_text())
    assert [c["status"] for c in summary["categories"]] == ["failed", "trained", "trained"]
    assert "| part_a | trained |" in (tmp_path / SUMMARY_MD).read_text()
    assert any(line.startswith("category") and "part_b" in line for line in lines)  # the progress table

    weights = (tmp_path / "part_a" / "model.safetensors").stat().st_mtime_ns
    again = train_many(categories_root, tmp_path, TINY, categories=["part_a"], echo=lambda _: None, poll_seconds=0.5)
    assert [(r.category, r.status) for r in again] == [("part_a", "skipped")]
    assert again[0].metrics == by_name["part_a"].metrics
    assert (tmp_path / "part_a" / "model.safetensors").stat().st_mtime_ns == weights

    # A longer schedule continues from the checkpoint instead of starting over.
    longer = train_many(
        categories_root, tmp_path, TrainManyOptions(**{**TINY.__dict__, "steps": 3}),
        categories=["part_b"], echo=lambda _: None, poll_seconds=0.5,
    )
    assert (longer[0].status, longer[0].resumed_from, longer[0].steps) == ("resumed", 2, 3)
    log = [json.loads(line)["step"] for line in (tmp_path / "part_b" / "train_log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]

    # A category folder in --out that is not a training run is refused and left as it was.
    other = tmp_path / "other"
    (other / "part_a").mkdir(parents=True)
    (other / "part_a" / "notes.txt").write_text("mine\n")
    refused = train_many(categories_root, other, TINY, categories=["part_a"], echo=lambda _: None, poll_seconds=0.5)
    assert refused[0].status == "failed" and "not a training run" in refused[0].error
    assert [p.name for p in (other / "part_a").iterdir()] == ["notes.txt"]


def test_train_many_refuses_unknown_categories_and_formats(categories_root: Path, tmp_path: Path) -> None:
    from fractalad_edge.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="part_z"):
        train_many(categories_root, tmp_path, TINY, categories=["part_z"])
    with pytest.raises(ConfigError, match="tflite"):
        TrainManyOptions(steps=1, batch_size=1, exports=("tflite",))


# --------------------------------------------------------------------------- predict --engine ray


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def images_with_bad_files(tmp_path_factory: pytest.TempPathFactory, normal_images_dir: Path) -> Path:
    """Seven images in two folders, a truncated copy and a pixel bomb: names relative to the root."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "line2").mkdir()
    for index, path in enumerate(sorted(normal_images_dir.glob("*.png"))[:7]):
        shutil.copy(path, folder / ("line2" if index % 2 else "") / path.name)
    data = (folder / "good_002.png").read_bytes()
    (folder / "good_002b.png").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "line2" / "bomb.png").write_bytes(_png_declaring(40_000, 40_000))  # over the 200 MP default
    return folder


def test_ray_predict_writes_the_same_rows_as_local_predict(
    ray_instance, tiny_run: Path, images_with_bad_files: Path, tmp_path: Path
) -> None:
    local = predict_files(tiny_run, [images_with_bad_files], out=tmp_path / "local", batch_size=3, echo=lambda _: None)
    lines: list[str] = []
    remote = predict_files_ray(
        tiny_run, [images_with_bad_files], out=tmp_path / "ray",
        options=RayPredictOptions(actors=2, batch_size=3), echo=lines.append,
    )
    assert (remote.total, remote.failed, remote.anomalous) == (local.total, local.failed, local.anomalous)
    assert (remote.total, remote.failed) == (9, 2)
    local_rows = (tmp_path / "local" / RESULTS_FILENAME).read_text().splitlines()
    ray_rows = (tmp_path / "ray" / RESULTS_FILENAME).read_text().splitlines()
    assert ray_rows == local_rows
    rows = [json.loads(line) for line in ray_rows]
    assert [r["image"] for r in rows] == sorted(r["image"] for r in rows)  # input order: sorted relative names
    errors = {r["image"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {"good_002b.png", "line2/bomb.png"}
    assert "truncated" in errors["good_002b.png"] and "over the limit" in errors["line2/bomb.png"]
    assert any(line.startswith("skipped") and "bomb.png" in line for line in lines)
    local_overlays = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*.png"))
    assert local_overlays == sorted(r["overlay"] for r in rows if "overlay" in r) and len(local_overlays) == 7
    for name in local_overlays:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_ray_predict_follows_the_local_output_rules(
    ray_instance, tiny_run: Path, images_with_bad_files: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    def invoke(*args: object):
        return CliRunner().invoke(app, ["predict", str(tiny_run), *map(str, args), "--engine", "ray"])

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep\n")
    result = invoke(images_with_bad_files, "--out", foreign, "--force")  # a folder predict did not write
    assert result.exit_code == 2 and "holds no predictions.jsonl" in result.output, result.output
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    out = tmp_path / "preds"
    result = invoke(images_with_bad_files, "--out", out, "--max-pixels", "4096")  # 64x64 images pass
    assert result.exit_code == 1 and "7 images scored" in result.output, result.output  # the two bad files fail
    assert len(list((out / "overlays").rglob("*.png"))) == 7
    with pytest.raises(OutputExistsError, match="--force"):
        predict_files_ray(tiny_run, [images_with_bad_files], out=out, echo=lambda _: None)
    (out / "notes.txt").write_text("mine\n")
    result = invoke(images_with_bad_files, "--out", out, "--force", "--pattern", "line2/*", "--max-pixels", "4095")
    assert result.exit_code == 1 and "0 images scored" in result.output, result.output  # the actors got the limit
    rows = [json.loads(line) for line in (out / RESULTS_FILENAME).read_text().splitlines()]
    assert [r["image"] for r in rows] == ["line2/bomb.png", "line2/good_001.png", "line2/good_003.png", "line2/good_005.png"]
    assert all("over the limit of 0.004095 MP" in r["error"] for r in rows)
    assert not list((out / "overlays").rglob("*.png"))  # the earlier run's overlays, listed by it, were removed
    assert (out / "notes.txt").read_text() == "mine\n"


def test_ray_predict_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        RayPredictOptions(batch_size=0)
    with pytest.raises(ConfigError, match="actors"):
        RayPredictOptions(actors=0)


# --------------------------------------------------------------------------- serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, method: str | None = None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _multipart(payload: bytes) -> tuple[bytes, str]:
    boundary = "fractaladboundary"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
        f"Content-Type: image/png\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server(ray_instance, tiny_run: Path):
    options = ServeOptions(
        port=_free_port(), max_batch_size=4, max_body_bytes=200_000, max_pixels=100 * 100, cpus_per_replica=0.5
    )
    url = start_server({"part": tiny_run, "part-copy": tiny_run}, options)
    yield url
    from ray import serve

    serve.shutdown()


def test_serve_scores_raw_and_multipart_images_like_the_predictor(server: str, tiny_run: Path, normal_images_dir: Path) -> None:
    from fractalad_edge.predictor import Predictor

    path = sorted(normal_images_dir.glob("*.png"))[0]
    payload = path.read_bytes()
    status, answer = _request(f"{server}/predict/part?mask=1", payload, {"Content-Type": "image/png"})
    assert status == 200, answer
    with Predictor.load(tiny_run, channel_order="rgb") as predictor:
        from fractalad_edge.data.images import read_image

        expected = predictor.predict(read_image(path))
    assert answer["pred_score"] == round(expected.pred_score, 6)
    assert answer["decision"] == ("anomalous" if expected.pred_label else "normal")
    assert answer["threshold"] == 0.5 and answer["model"] == "part" and len(answer["version"]) == 12
    mask = cv2.imdecode(np.frombuffer(__import__("base64").b64decode(answer["mask_png_base64"]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (64, 64) and np.array_equal(mask > 0, expected.pred_mask)

    body, content_type = _multipart(payload)
    status, other = _request(f"{server}/predict/part-copy", body, {"Content-Type": content_type})
    assert status == 200 and other["pred_score"] == answer["pred_score"] and other["model"] == "part-copy"
    assert "mask_png_base64" not in other


def test_serve_answers_bad_requests_with_4xx_and_keeps_serving(server: str, normal_images_dir: Path) -> None:
    payload = sorted(normal_images_dir.glob("*.png"))[1].read_bytes()
    big = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    too_large = cv2.imencode(".png", big)[1].tobytes()
    assert len(too_large) > 200_000
    too_many_pixels = cv2.imencode(".png", np.zeros((120, 120, 3), np.uint8))[1].tobytes()  # a small body, 14 400 px
    cases = [
        ("/predict/part", b"this is not an image", {}, None, 400, "cannot be decoded"),
        ("/predict/part", payload[: len(payload) // 2], {}, None, 400, "truncated"),
        ("/predict/part", b"", {}, "POST", 400, "empty"),
        ("/predict/nope", payload, {}, None, 404, "unknown model"),
        ("/predict", payload, {}, None, 404, "several models"),
        ("/predict/part", too_large, {}, None, 413, "limit"),
        ("/predict/part", too_many_pixels, {}, None, 413, "over the limit of 0.01 MP"),
        ("/predict/part", _png_declaring(40_000, 40_000), {}, None, 413, "refused before decoding"),
        ("/predict/part", None, {}, "GET", 405, "POST"),
        ("/elsewhere", None, {}, None, 404, "no route"),
        ("/predict/part", _multipart(b"")[0], {"Content-Type": _multipart(b"")[1]}, None, 400, "no file"),
    ]
    for route, data, headers, method, status, reason in cases:
        got, answer = _request(f"{server}{route}", data, headers, method)
        assert (got, reason in answer["error"]) == (status, True), (route, got, answer)
        assert "\n" not in answer["error"]
    status, health = _request(f"{server}/health")
    assert status == 200 and health == {"status": "ok", "models": ["part", "part-copy"]}
    status, answer = _request(f"{server}/predict/part", payload)
    assert status == 200 and 0.0 <= answer["pred_score"] <= 1.0


def test_serve_refuses_bad_names_before_starting(tiny_run: Path) -> None:
    from fractalad_edge.distributed.serve import check_models

    with pytest.raises(ConfigError, match="not allowed"):
        check_models({"a/b": tiny_run})
    with pytest.raises(ConfigError, match="port"):
        ServeOptions(port=0)


def test_the_readme_client_examples_work_against_a_server(
    server: str, normal_images_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's Ray section: its curl lines and Python client, pointed at this test server."""
    import contextlib
    import io
    import re
    import subprocess

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Many products, archives and cameras: Ray") :]
    section = section[: section.index("\n## ", 1)]

    def here(text: str) -> str:
        return text.replace("http://127.0.0.1:8000", server).replace("/predict/bottle", "/predict/part")

    shutil.copy(sorted(normal_images_dir.glob("*.png"))[0], tmp_path / "part.png")
    monkeypatch.chdir(tmp_path)
    python = re.findall(r"```py\n(.*?)```", section, flags=re.S)
    assert len(python) == 1
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(here(python[0]), "README.md", "exec"), {})  # noqa: S102 - the README's own example
    decision, score = printed.getvalue().split()
    assert decision in ("normal", "anomalous") and 0.0 <= float(score) <= 1.0
    (tmp_path / "part.png").write_bytes(b"not an image")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(here(python[0]), "README.md", "exec"), {})  # noqa: S102
    assert printed.getvalue().startswith("400 ") and "cannot be decoded" in printed.getvalue()

    curls = [line for line in re.findall(r"```sh\n(.*?)```", section, flags=re.S)[1].splitlines() if line.startswith("curl ")]
    assert len(curls) == 3
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed; the Python client was checked")
    shutil.copy(sorted(normal_images_dir.glob("*.png"))[0], tmp_path / "part.png")
    answers = [json.loads(subprocess.run(here(c), shell=True, check=True, capture_output=True, text=True).stdout) for c in curls]  # noqa: S602
    assert answers[0]["decision"] == answers[1]["decision"] and "mask_png_base64" in answers[0]
    assert answers[2]["status"] == "ok"

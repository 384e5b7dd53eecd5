"""No lost file, no traceback: --out folders, checkpoints, predict options and hostile image files.

Every case runs the real command (typer's CliRunner, or a subprocess for kill -9) on tiny
generated data and checks the files on disk: a refused command leaves every byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from fractalad_edge.cli import app
from fractalad_edge.data.images import image_size_from_header, read_image
from fractalad_edge.errors import ConfigError, ImageReadError, ImageTooLargeError
from fractalad_edge.outputs import StagedOutput, atomic_write_text, sweep_stale_partials

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links included) with its sha256: compared before and after."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def assert_refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir()
    return tmp_path / "ws"


def _user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("a user's notes\n")
    (folder / "config.json").write_text('{"camera": 3}\n')
    return folder


def _training_run(folder: Path, tiny_run: Path) -> Path:
    shutil.copytree(tiny_run, folder)
    (folder / "checkpoint.json").write_text('{"step": 5}\n')
    (folder / "train_log.jsonl").write_text('{"step": 1}\n')
    return folder


def _run_without_checkpoint(folder: Path, tiny_run: Path) -> Path:
    """A run killed before its first checkpoint: config.json and a log, nothing to resume."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"train": {}, "data": str(tiny_run)}))
    (folder / "train_log.jsonl").write_text('{"step": 1}\n')
    return folder


def _onnx_like_export(folder: Path, tiny_run: Path) -> Path:
    """A real artifact of another format than torch (metadata says onnx)."""
    shutil.copytree(tiny_run, folder)
    (folder / "config.json").unlink()
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["format"], metadata["runtime"] = "onnx", "onnxruntime"
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def _torch_export(folder: Path, tiny_run: Path) -> Path:
    shutil.copytree(tiny_run, folder)
    (folder / "config.json").unlink()
    return folder


DESTINATIONS = {
    "user files": lambda ws, run: _user_folder(ws / "out"),
    "training run": lambda ws, run: _training_run(ws / "out", run),
    "run without checkpoint": lambda ws, run: _run_without_checkpoint(ws / "out", run),
    "export of another format": lambda ws, run: _onnx_like_export(ws / "out", run),
}


# ----------------------------------------------------------------------------- export --out
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", sorted(DESTINATIONS))
def test_export_never_writes_into_a_folder_it_did_not_write(kind: str, force: bool, tiny_run: Path, workspace: Path) -> None:
    out = DESTINATIONS[kind](workspace, tiny_run)
    before = tree(workspace)
    result = invoke("export", tiny_run, "--format", "torch", "--out", out, *(["--force"] if force else []))
    assert_refused(result, str(out))
    assert tree(workspace) == before


def test_export_onto_its_own_kind_needs_force(tiny_run: Path, workspace: Path) -> None:
    out = _torch_export(workspace / "out", tiny_run)
    before = tree(workspace)
    assert_refused(invoke("export", tiny_run, "--format", "torch", "--out", out), "--force")
    assert tree(workspace) == before


@pytest.mark.parametrize("make", ["symlink", "file", "symlink to nothing"])
@pytest.mark.parametrize("command", ["export", "train", "predict"])
def test_a_symlink_or_file_as_out_is_refused_before_any_work(
    make: str, command: str, tiny_run: Path, normal_images_dir: Path, workspace: Path
) -> None:
    target = _user_folder(workspace / "elsewhere")
    out = workspace / "out"
    if make == "symlink":
        out.symlink_to(target, target_is_directory=True)
    elif make == "file":
        out.write_text("not a folder\n")
    else:
        out.symlink_to(workspace / "missing")
    before = tree(workspace)
    args = {
        "export": ("export", tiny_run, "--format", "torch", "--out", out, "--force"),
        "train": ("train", "--data", normal_images_dir, "--out", out, "--force", "--steps", "1", "--input-size", "64"),
        "predict": ("predict", tiny_run, normal_images_dir, "--out", out, "--force"),
    }[command]
    assert_refused(invoke(*args), str(out))
    assert tree(workspace) == before


def test_export_force_replaces_only_the_listed_files(tiny_run: Path, workspace: Path) -> None:
    out = workspace / "model"
    options = ("--calib-count", "4")
    assert invoke("export", tiny_run, "--format", "torch", "--out", out, *options).exit_code == 0
    (out / "README.txt").write_text("the user's own note\n")
    (out / "eval").mkdir()
    (out / "eval" / "report.md").write_text("# mine\n")
    first = json.loads((out / "metadata.json").read_text())
    result = invoke("export", tiny_run, "--format", "torch", "--out", out, "--force", *options, "--calib-seed", "7")
    assert result.exit_code == 0, result.output
    assert (out / "README.txt").read_text() == "the user's own note\n"
    assert (out / "eval" / "report.md").read_text() == "# mine\n"
    second = json.loads((out / "metadata.json").read_text())
    assert second["created"] >= first["created"] and second["calibration"] != first["calibration"]
    assert not list(workspace.glob(".*.partial"))


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_kill_during_export_leaves_nothing_loadable_and_the_next_run_sweeps_the_scratch(
    kill: int, tiny_run: Path, workspace: Path
) -> None:
    out = workspace / "killed"
    command = [sys.executable, "-m", "fractalad_edge.cli", "export", str(tiny_run), "--format", "torch", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any((p / "files").is_dir() for p in workspace.glob(".*.partial")) and time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the export finished before it could be killed")
        time.sleep(0.02)
    process.send_signal(kill)
    process.wait()
    # kill -9 cannot be caught: its scratch stays until the next run; SIGTERM cleans up on the way out.
    assert bool(list(workspace.glob(".*.partial"))) is (kill == signal.SIGKILL)
    assert not (out / "metadata.json").exists()  # nothing loadable where the artifact was expected
    result = invoke("export", tiny_run, "--format", "torch", "--out", workspace / "next", "--calib-count", "4")
    assert result.exit_code == 0, result.output
    assert not list(workspace.glob(".*.partial"))  # the dead process's scratch is swept


# ----------------------------------------------------------------------------- train --out
TRAIN_TINY = ("--steps", "1", "--batch-size", "2", "--input-size", "64", "--head-channels", "8")


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("kind", ["user files", "export of another format", "torch export"])
def test_train_never_writes_into_a_foreign_folder(
    kind: str, force: bool, tiny_run: Path, normal_images_dir: Path, workspace: Path
) -> None:
    make = {**DESTINATIONS, "torch export": lambda ws, run: _torch_export(ws / "out", run)}[kind]
    out = make(workspace, tiny_run)
    before = tree(workspace)
    result = invoke("train", "--data", normal_images_dir, "--out", out, *TRAIN_TINY, *(["--force"] if force else []))
    assert_refused(result, str(out))
    assert tree(workspace) == before


@pytest.mark.parametrize("kind", ["training run", "run without checkpoint"])
def test_train_onto_a_run_asks_for_resume_or_force(kind: str, tiny_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = DESTINATIONS[kind](workspace, tiny_run)
    before = tree(workspace)
    assert_refused(invoke("train", "--data", normal_images_dir, "--out", out, *TRAIN_TINY), "--force")
    assert tree(workspace) == before


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, normal_images_dir: Path) -> Path:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("runs") / "a"
    result = invoke("train", "--data", normal_images_dir, "--out", out, *TRAIN_TINY, "--lr", "0.001")
    assert result.exit_code == 0, result.output
    return out


def test_train_force_replaces_the_run_and_keeps_the_users_files(finished_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = workspace / "run"
    shutil.copytree(finished_run, out)
    (out / "notes.txt").write_text("keep me\n")
    old_id = json.loads((out / "config.json").read_text())["run_id"]
    result = invoke("train", "--data", normal_images_dir, "--out", out, *TRAIN_TINY, "--force")
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "keep me\n"
    assert json.loads((out / "config.json").read_text())["run_id"] != old_id
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1]


# ----------------------------------------------------------------------------- run identity
@pytest.mark.parametrize(
    "change",
    [("--lr", "0.0005"), ("--seed", "1"), ("--batch-size", "1"), ("--head-channels", "16"), ("--no-kd",), ("--lr-schedule", "cosine")],
    ids=lambda c: c[0],
)
def test_resume_refuses_a_checkpoint_of_another_run(change: tuple[str, ...], finished_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = workspace / "run"
    shutil.copytree(finished_run, out)
    # Another run's options in config.json (as an older version left it): the checkpoint still decides.
    options = dict(zip(TRAIN_TINY[::2], TRAIN_TINY[1::2]))
    flags = [x for k, v in options.items() if k not in change for x in (k, v)]
    given = ("train", "--data", normal_images_dir, "--out", out, *flags, *change, "--resume")
    before = tree(workspace)
    result = invoke(*given)
    assert_refused(result, "options differ", json.loads((out / "config.json").read_text())["run_id"][:12])
    assert tree(workspace) == before


def test_resume_refuses_a_checkpoint_whose_training_images_changed(finished_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = workspace / "run"
    shutil.copytree(finished_run, out)
    data = workspace / "data"
    shutil.copytree(normal_images_dir, data)
    next(data.glob("*.png")).unlink()
    assert_refused(invoke("train", "--data", data, "--out", out, *TRAIN_TINY, "--resume"), "images")


def test_resume_refuses_a_checkpoint_without_identity(finished_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    from safetensors.torch import load_file, save_file

    out = workspace / "run"
    shutil.copytree(finished_run, out)
    save_file(load_file(str(out / "checkpoint.safetensors")), str(out / "checkpoint.safetensors"))  # an old header
    (out / "checkpoint.json").write_text(json.dumps({"step": 1, "param_groups": []}))
    assert_refused(invoke("train", "--data", normal_images_dir, "--out", out, *TRAIN_TINY, "--resume"), "identity")


def test_resume_with_the_same_options_continues_its_own_run(finished_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = workspace / "run"
    shutil.copytree(finished_run, out)
    flags = [x if x != "1" or i != 1 else "2" for i, x in enumerate(TRAIN_TINY)]
    result = invoke("train", "--data", normal_images_dir, "--out", out, *flags, "--resume")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint(finished_run: Path, workspace: Path, monkeypatch) -> None:
    import torch

    from fractalad_edge.models import torch_format
    from fractalad_edge.train import checkpoint

    out = workspace / "run"
    shutil.copytree(finished_run, out)
    before = tree(out)

    def half_written(tensors, path, metadata=None):  # noqa: ANN001
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch_format, "save_file", half_written)  # the atomic safetensors writer checkpoints use
    layer = torch.nn.Linear(2, 2)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_training_state(out, layer, torch.optim.SGD(layer.parameters(), lr=0.1), step=9, extra={})
    assert tree(out) == before  # no temporary file left, the old checkpoint whole


# ----------------------------------------------------------------------------- predict
@pytest.fixture()
def predictions(tiny_run: Path, normal_images_dir: Path, workspace: Path) -> Path:
    out = workspace / "preds"
    result = invoke("predict", tiny_run, normal_images_dir, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "args",
    [
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
        ("--max-pixels", "0"),
        ("--pattern", "*.nothing"),
        ("--runtime", "nope"),
        ("--device", "tpu"),
        (),  # existing results without --force
    ],
    ids=["batch0", "batch-1", "maxpix0", "pattern", "runtime", "device", "noforce"],
)
def test_predict_with_bad_options_leaves_earlier_results_untouched(
    args: tuple[str, ...], predictions: Path, tiny_run: Path, normal_images_dir: Path, workspace: Path
) -> None:
    before = tree(workspace)
    extra = ("--force",) if args else ()
    result = invoke("predict", tiny_run, normal_images_dir, "--out", predictions, *args, *extra)
    assert_refused(result)
    assert tree(workspace) == before


def test_predict_refuses_a_missing_input_before_touching_results(predictions: Path, tiny_run: Path, workspace: Path) -> None:
    before = tree(workspace)
    assert_refused(invoke("predict", tiny_run, workspace / "nope", "--out", predictions, "--force"), "nope")
    assert tree(workspace) == before


def test_predict_never_writes_into_a_folder_of_other_files(tiny_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    out = _user_folder(workspace / "out")
    before = tree(workspace)
    assert_refused(invoke("predict", tiny_run, normal_images_dir, "--out", out, "--force"))
    assert tree(workspace) == before


def test_predict_force_replaces_results_and_keeps_other_files(predictions: Path, tiny_run: Path, normal_images_dir: Path) -> None:
    (predictions / "notes.txt").write_text("mine\n")
    result = invoke("predict", tiny_run, normal_images_dir, "--out", predictions, "--force", "--pattern", "good_000.png")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (predictions / "predictions.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == ["good_000.png"]
    assert sorted(p.name for p in (predictions / "overlays").iterdir()) == ["good_000.png"]  # the old run's others removed
    assert (predictions / "notes.txt").read_text() == "mine\n"


@pytest.fixture()
def two_folders(normal_images_dir: Path, workspace: Path) -> Path:
    images = sorted(normal_images_dir.glob("*.png"))
    root = workspace / "test"
    for sub, picks in (("a", images[:2]), ("b", images[2:4]), ("b/deep", images[4:5])):
        (root / sub).mkdir(parents=True)
        for index, path in enumerate(picks):
            shutil.copy(path, root / sub / f"{index:03d}.png")
    (root / ".hidden").mkdir()
    shutil.copy(images[5], root / ".hidden" / "000.png")
    return root


@pytest.mark.parametrize(
    "inputs,extra,expected",
    [
        (["test"], [], ["a/000.png", "a/001.png", "b/000.png", "b/001.png", "b/deep/000.png"]),
        (["test"], ["--no-recursive"], None),
        (["test"], ["--pattern", "b/*.png"], ["b/000.png", "b/001.png", "b/deep/000.png"]),
        (["test/a", "test/b"], ["--no-recursive"], ["a/000.png", "a/001.png", "b/000.png", "b/001.png"]),
        (["test/a/000.png", "test/b/000.png"], [], ["a/000.png", "b/000.png"]),
        (["test", "test/a"], [], ["a/000.png", "a/001.png", "b/000.png", "b/001.png", "b/deep/000.png"]),
        (["list.txt"], [], ["a/001.png", "b/deep/000.png"]),
    ],
    ids=["tree", "no-recursive", "pattern", "two-folders", "same-names", "duplicates", "list-file"],
)
def test_predict_names_rows_and_overlays_by_relative_path(
    inputs: list[str], extra: list[str], expected: list[str] | None, two_folders: Path, tiny_run: Path, workspace: Path
) -> None:
    (workspace / "list.txt").write_text("# images to check\ntest/a/001.png\n\ntest/b/deep/000.png\n")
    out = workspace / "preds"
    result = invoke("predict", tiny_run, *[workspace / i for i in inputs], "--out", out, *extra)
    if expected is None:
        assert_refused(result, "no images")
        return
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == expected  # each image once, by its relative path
    overlays = sorted(p.relative_to(out / "overlays").as_posix() for p in (out / "overlays").rglob("*.png"))
    assert overlays == expected


def test_an_unwritable_overlay_folder_is_an_error_not_a_warning(predictions: Path, tiny_run: Path, normal_images_dir: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    (predictions / "overlays").chmod(0o555)
    try:
        before = tree(predictions)
        assert_refused(invoke("predict", tiny_run, normal_images_dir, "--out", predictions, "--force"), "overlays")
        assert tree(predictions) == before
    finally:
        (predictions / "overlays").chmod(0o755)


# ----------------------------------------------------------------------------- image files
def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 200_000)  # far too little data for the declared size
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _encoded(suffix: str, width: int = 37, height: int = 23) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"])
def test_header_sizes_match_the_decoded_image(suffix: str) -> None:
    assert image_size_from_header(_encoded(suffix)) == (37, 23)


def _huge(suffix: str) -> bytes:
    data = bytearray(_encoded(suffix))
    if suffix == ".png":
        return _png_declaring(40_000, 40_000)
    if suffix == ".bmp":
        data[18:26] = struct.pack("<ii", 40_000, -40_000)
    elif suffix == ".tif":
        data = bytearray(b"II*\x00\x08\x00\x00\x00\x02\x00" + struct.pack("<HHII", 256, 4, 1, 40_000) + struct.pack("<HHII", 257, 4, 1, 40_000))
    elif suffix == ".jpg":
        position = data.index(b"\xff\xc0")
        data[position + 5 : position + 9] = struct.pack(">HH", 40_000, 40_000)
    elif suffix == ".ppm":
        return b"P6\n40000 40000\n255\n" + bytes(100)
    elif suffix == ".webp":
        data = bytearray(b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10) + bytes(4) + (39_999).to_bytes(3, "little") * 2)
    return bytes(data)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif", ".webp", ".ppm"])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(suffix: str, tmp_path: Path) -> None:
    path = tmp_path / f"huge{suffix}"
    path.write_bytes(_huge(suffix))
    with pytest.raises(ImageTooLargeError, match="40000x40000 = 1600 MP"):
        read_image(path)


def test_the_pixel_limit_is_configurable(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(_encoded(".png"))
    with pytest.raises(ImageTooLargeError, match="over the limit"):
        read_image(path, max_pixels=100)
    monkeypatch.setenv("FRACTALAD_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(ImageTooLargeError):
        read_image(path)
    assert read_image(path, max_pixels=37 * 23).shape == (23, 37, 3)


@pytest.mark.parametrize("value", [0, -5, True, "many"])
def test_a_bad_pixel_limit_is_a_config_error(value: object, tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    path.write_bytes(_encoded(".png"))
    with pytest.raises(ConfigError):
        read_image(path, max_pixels=value)  # type: ignore[arg-type]


def _smooth_jpeg() -> bytes:
    image = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8), (9, 9), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:2000] + bytes(3000) + d[5000:],
        lambda d: d[:2000] + bytes(np.random.default_rng(2).integers(0, 255, 3000, dtype=np.uint8)) + d[5000:],
        lambda d: d[:3000] + d[6000:],
    ],
    ids=["zeroed", "random", "cut-out"],
)
def test_a_jpeg_with_corrupt_data_is_reported_not_scored(damage, tmp_path: Path) -> None:
    pytest.importorskip("simplejpeg")
    good = _smooth_jpeg()
    (tmp_path / "good.jpg").write_bytes(good)
    assert read_image(tmp_path / "good.jpg").shape == (256, 256, 3)
    (tmp_path / "bad.jpg").write_bytes(damage(good))
    with pytest.raises(ImageReadError, match="corrupt JPEG data"):
        read_image(tmp_path / "bad.jpg")


def test_a_decoder_error_is_an_image_error(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_png_declaring(40_000, 40_000))
    with pytest.raises(ImageReadError, match="cannot be decoded"):
        read_image(path, max_pixels=2_000_000_000)  # past our limit: OpenCV's own refusal becomes an ImageReadError


def test_predict_skips_a_decompression_bomb_and_scores_the_rest(tiny_run: Path, normal_images_dir: Path, workspace: Path) -> None:
    images = workspace / "images"
    shutil.copytree(normal_images_dir, images)
    (images / "bomb.png").write_bytes(_png_declaring(40_000, 40_000))
    result = invoke("predict", tiny_run, images, "--out", workspace / "preds")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "bomb.png" in result.output and "1600 MP" in result.output
    rows = [json.loads(line) for line in (workspace / "preds" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == len(list(normal_images_dir.glob("*.png"))) + 1
    assert [r["image"] for r in rows if "error" in r] == ["bomb.png"]


def test_train_refuses_a_decompression_bomb_in_one_line(normal_images_dir: Path, workspace: Path) -> None:
    pytest.importorskip("torch")  # without the train extra, train stops earlier, naming it
    data = workspace / "normals"
    shutil.copytree(normal_images_dir, data)
    (data / "bomb.png").write_bytes(_png_declaring(40_000, 40_000))
    result = invoke("train", "--data", data, "--out", workspace / "run", *TRAIN_TINY)
    assert_refused(result, "bomb.png", "1 of")
    assert not (workspace / "run").exists()


# ----------------------------------------------------------------------------- helpers
def test_stale_scratch_of_a_dead_process_is_swept_and_others_stay(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    for name, pid in ((".a.1.x.partial", dead.pid), (".b.2.y.partial", os.getppid())):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".fractalad-partial").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    (tmp_path / ".users.partial").mkdir()  # no marker: not ours
    assert sweep_stale_partials(tmp_path) == [tmp_path / ".a.1.x.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.2.y.partial", ".users.partial"]


def test_a_failed_staged_output_leaves_the_destination_and_no_scratch(tmp_path: Path) -> None:
    out = _user_folder(tmp_path / "out")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError), StagedOutput(out) as staged:
        (staged.files / "model.onnx").write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert tree(tmp_path) == before


def test_atomic_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "metadata.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["metadata.json"]

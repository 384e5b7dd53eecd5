"""Training: losses, reproducibility, resume, checkpoint errors. Tiny data, a few steps."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fractalad_edge.artifact import read_metadata, sha256_file  # noqa: E402
from fractalad_edge.data.demo import make_demo_dataset  # noqa: E402
from fractalad_edge.errors import CheckpointError, ConfigError  # noqa: E402
from fractalad_edge.models.fractalad import ModelConfig, build_model  # noqa: E402
from fractalad_edge.synth.anomaly import SynthConfig  # noqa: E402
from fractalad_edge.models.torch_format import MODEL_FILENAME, load_model_weights  # noqa: E402
from fractalad_edge.train.config import TrainConfig, steps_for_epochs  # noqa: E402
from fractalad_edge.train.dataset import FractalAnomalyDataset  # noqa: E402
from fractalad_edge.train.losses import dice_loss, segmentation_loss  # noqa: E402
from fractalad_edge.train.loop import train  # noqa: E402

SIZE = 64


def tiny_config(**overrides) -> TrainConfig:
    base = dict(
        model=ModelConfig(input_size=SIZE, head_channels=8),
        synth=SynthConfig(image_size=SIZE, fractal_points=4000),
        steps=3,
        batch_size=2,
        checkpoint_every=1,
        calibration_images=4,
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "part", size=SIZE, train=6, test_good=2, test_defect=2)


def test_dice_is_zero_for_a_perfect_map_and_one_for_the_inverse() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    perfect = (mask * 2 - 1) * 50
    assert float(dice_loss(perfect, mask)) < 1e-3
    assert float(dice_loss(-perfect, mask)) > 0.9
    assert float(segmentation_loss(perfect, mask)) < float(segmentation_loss(-perfect, mask))


def test_published_schedule_is_the_default() -> None:
    config = TrainConfig()
    assert config.batch_size == 32 and config.steps == steps_for_epochs(100, 32) == 1222
    assert config.lr == 1e-3 and config.weight_decay == 1e-3


@pytest.mark.parametrize("field,value", [("steps", 0), ("batch_size", 0), ("lr", -1.0), ("device", "tpu")])
def test_config_rejects_bad_values(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field if field != "device" else "device"):
        tiny_config(**{field: value})


def test_config_rejects_mismatched_synth_size() -> None:
    with pytest.raises(ConfigError, match="synthetic image size"):
        tiny_config(synth=SynthConfig(image_size=128))


def test_config_round_trips_through_json() -> None:
    config = tiny_config(bf16=True, seed=7)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_training_samples_depend_only_on_seed_and_index(demo_data: Path) -> None:
    paths = sorted((demo_data / "train" / "good").glob("*.png"))
    full = FractalAnomalyDataset(paths, SynthConfig(image_size=SIZE, fractal_points=4000), seed=3, length=6)
    resumed = FractalAnomalyDataset(paths, SynthConfig(image_size=SIZE, fractal_points=4000), seed=3, length=6, start=4)
    for a, b in zip(full[4], resumed[0]):
        assert torch.equal(a, b)
    other_seed = FractalAnomalyDataset(paths, SynthConfig(image_size=SIZE, fractal_points=4000), seed=4, length=6)
    assert not torch.equal(full[0][2], other_seed[0][2])


def test_decoded_image_cache_changes_no_sample(demo_data: Path) -> None:
    paths = sorted((demo_data / "train" / "good").glob("*.png"))
    synth = SynthConfig(image_size=SIZE, fractal_points=4000)
    # length > len(paths): the second pass over the images reads them from the cache.
    cached = FractalAnomalyDataset(paths, synth, seed=3, length=2 * len(paths))
    uncached = FractalAnomalyDataset(paths, synth, seed=3, length=2 * len(paths), cache_bytes=0)
    for i in range(2 * len(paths)):
        for a, b in zip(cached[i], uncached[i]):
            assert torch.equal(a, b)
    assert len(cached._cache) == len(paths) and not uncached._cache
    assert all(not image.flags.writeable for image in cached._cache.values())  # the generator cannot alter them


def test_same_seed_reproduces_a_run_and_writes_a_loadable_artifact(demo_data: Path, tmp_path: Path) -> None:
    first = train(tiny_config(), demo_data, tmp_path / "a", progress=False)
    train(tiny_config(), demo_data, tmp_path / "b", progress=False)
    assert first.steps == 3
    assert sha256_file(tmp_path / "a" / MODEL_FILENAME) == sha256_file(tmp_path / "b" / MODEL_FILENAME)
    metadata = read_metadata(tmp_path / "a")
    assert metadata.calibration is not None and metadata.calibration.source == "synthetic"
    assert metadata.model["input_size"] == SIZE
    log = [json.loads(line) for line in (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in log)

    from fractalad_edge.predictor import Predictor

    result = Predictor.load(tmp_path / "a").predict(np.zeros((50, 70, 3), np.uint8))
    assert result.anomaly_map.shape == (50, 70) and 0.0 <= result.score <= 1.0


def test_resume_continues_exactly_where_an_interrupted_run_stopped(demo_data: Path, tmp_path: Path) -> None:
    train(tiny_config(), demo_data, tmp_path / "straight", progress=False)

    def interrupt(step: int, _: dict) -> None:
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), demo_data, tmp_path / "resumed", progress=False, on_step=interrupt)
    train(tiny_config(), demo_data, tmp_path / "resumed", progress=False, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # the interrupted step after the last checkpoint is not logged twice
    straight = load_state(tmp_path / "straight" / MODEL_FILENAME)
    resumed = load_state(tmp_path / "resumed" / MODEL_FILENAME)
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6, msg=key)


def test_resume_refuses_other_options_but_may_extend_the_schedule(demo_data: Path, tmp_path: Path) -> None:
    train(tiny_config(steps=1), demo_data, tmp_path / "run", progress=False)
    with pytest.raises(CheckpointError, match="options differ"):
        train(tiny_config(steps=1, lr=5e-4), demo_data, tmp_path / "run", progress=False, resume=True)
    extended = train(tiny_config(steps=2), demo_data, tmp_path / "run", progress=False, resume=True)
    assert (extended.steps, extended.steps_run) == (2, 1)
    again = train(tiny_config(steps=2), demo_data, tmp_path / "run", progress=False, resume=True)
    assert (again.steps, again.steps_run) == (2, 0)
    with pytest.raises(CheckpointError, match="nothing to resume|no checkpoint"):
        train(tiny_config(steps=1), demo_data, tmp_path / "empty", progress=False, resume=True)


def test_checkpoint_of_another_backbone_is_a_clear_error(tmp_path: Path) -> None:
    from fractalad_edge.models.torch_format import save_model

    lite = build_model(ModelConfig(input_size=SIZE, head_channels=8), pretrained_teacher=False)
    save_model(lite, tmp_path / MODEL_FILENAME)
    resnet = build_model(ModelConfig(backbone="resnet18", input_size=SIZE, head_channels=8), pretrained_teacher=False)
    with pytest.raises(CheckpointError, match="another backbone"):
        load_model_weights(resnet, tmp_path / MODEL_FILENAME)


def load_state(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_cosine_schedule_anneals_to_zero_and_constant_stays_put() -> None:
    cosine = tiny_config(steps=4, lr=1e-3, lr_schedule="cosine")
    assert [cosine.learning_rate(t) for t in range(5)] == pytest.approx([1e-3, 8.5355339e-4, 5e-4, 1.4644661e-4, 0.0], abs=1e-10)
    assert tiny_config(steps=4, lr=1e-3).learning_rate(3) == 1e-3
    with pytest.raises(ConfigError, match="lr_schedule"):
        tiny_config(lr_schedule="step")


def test_cosine_run_logs_its_learning_rates_and_refuses_a_longer_resume(demo_data: Path, tmp_path: Path) -> None:
    train(tiny_config(lr_schedule="cosine"), demo_data, tmp_path / "run", progress=False)
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert rates == pytest.approx([1e-3, 7.5e-4, 2.5e-4])  # steps 0, 1, 2 of 3
    with pytest.raises(CheckpointError, match="tied to its 3 steps"):
        train(tiny_config(lr_schedule="cosine", steps=4), demo_data, tmp_path / "run", progress=False, resume=True)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="malloc tuning needs glibc"
)
def test_malloc_tuning_applies_on_glibc() -> None:
    from fractalad_edge.allocator import keep_freed_memory

    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent

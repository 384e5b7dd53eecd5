"""Fractal anomaly generation: IFS sampling, chaos game, rendering, colour jitter, the generator."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from fractalad_edge.errors import ConfigError, InvalidInputError
from fractalad_edge.synth.anomaly import (
    AnomalySample,
    FractalAnomalyGenerator,
    SynthConfig,
    _apply_area,
    _area_table,
    _pool_any,
    object_geometry,
)
from fractalad_edge.synth.fractal import (
    chaos_game,
    random_fractal_mask,
    render_fractal,
    sample_ifs,
    sample_singular_values,
)
from fractalad_edge.synth.jitter import BRIGHTNESS, CONTRAST, HUE, SATURATION, ColorJitter, JitterParams, apply_jitter
from fractalad_edge.synth.preview import preview_grid, save_preview

GREY = np.array([0.2989, 0.587, 0.114])


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour texture: every pasted patch differs from what it covers."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def object_image(size: int = 128, centre: tuple[int, int] = (30, 90), radius: int = 10) -> np.ndarray:
    """A textured disk (the object) on a flat dark background."""
    image = np.full((size, size, 3), 20, dtype=np.uint8)
    disk = np.zeros((size, size), dtype=np.uint8)
    cv2.circle(disk, (centre[1], centre[0]), radius, 1, thickness=-1)
    texture = textured(size, size, seed=3) // 2 + 120
    image[disk.astype(bool)] = texture[disk.astype(bool)]
    return image


# --- IFS sampling --------------------------------------------------------------------------


@pytest.mark.parametrize("n_maps", [1, 2, 3, 4])
def test_singular_values_meet_the_weighted_sum_exactly(n_maps: int) -> None:
    rng = np.random.default_rng(n_maps)
    for _ in range(50):
        alpha = rng.uniform((5 + n_maps) / 2, min(3 * n_maps, (6 + n_maps) / 2))
        svs = sample_singular_values(rng, n_maps, alpha)
        assert svs.shape == (n_maps, 2)
        assert np.all(svs >= 0) and np.all(svs <= 1)
        assert np.all(svs[:, 0] >= svs[:, 1])
        assert np.isclose((svs[:, 0] + 2 * svs[:, 1]).sum(), alpha)


def test_sample_ifs_is_contractive_with_sigma_factor_in_range() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        A, b = sample_ifs(rng, 2)
        assert A.shape == (2, 2, 2) and b.shape == (2, 2)
        svs = np.linalg.svd(A, compute_uv=False)
        assert np.all(svs < 1.0)
        assert 3.5 - 1e-9 <= (svs[:, 0] + 2 * svs[:, 1]).sum() <= 4.0 + 1e-9
        assert np.all(np.abs(b) <= 1.0)


def test_sample_ifs_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="n_maps"):
        sample_ifs(rng, 0)
    with pytest.raises(ConfigError, match="sigma_factor_range"):
        sample_ifs(rng, 2, sigma_factor_range=(4.0, 7.0))


# --- chaos game and rendering ----------------------------------------------------------------


def test_chaos_game_stays_on_the_attractor_and_picks_maps_by_determinant() -> None:
    # f0 = x/2 - (1/2, 0), f1 = x/4 + (3/4, 0): the attractor's x-range is [-1, 1]; f0 puts
    # points in [-1, 0], f1 in [0.5, 1]. |det| 0.25 vs 0.0625 -> 80 % of points from f0.
    A = np.array([np.eye(2) * 0.5, np.eye(2) * 0.25])
    b = np.array([[-0.5, 0.0], [0.75, 0.0]])
    points = chaos_game(A, b, 50_000, np.random.default_rng(1))
    assert points.shape == (50_000, 2)
    assert points[:, 0].min() >= -1 - 1e-9 and points[:, 0].max() <= 1 + 1e-9
    assert np.allclose(points[:, 1], 0.0)
    assert not np.any((points[:, 0] > 1e-9) & (points[:, 0] < 0.5 - 1e-9))  # the gap
    assert abs((points[:, 0] < 0.25).mean() - 0.8) < 0.01


def test_chaos_game_is_seeded_and_walker_count_independent_in_support() -> None:
    A, b = sample_ifs(np.random.default_rng(5))
    p1 = chaos_game(A, b, 10_000, np.random.default_rng(7))
    p2 = chaos_game(A, b, 10_000, np.random.default_rng(7))
    assert np.array_equal(p1, p2)
    p3 = chaos_game(A, b, 10_000, np.random.default_rng(7), n_walkers=10, burn_in=0)
    lo, hi = p1.min(axis=0), p1.max(axis=0)
    margin = 0.05 * (hi - lo).max()
    assert np.all(p3 >= lo - margin) and np.all(p3 <= hi + margin)


def test_render_stamps_random_subsets_of_the_3x3_neighbourhood() -> None:
    # A single point lands in the centre of a 5x5 canvas; each neighbour is stamped with
    # probability 1/2, independently. Two points on the same pixel: 3/4.
    one = np.zeros((1, 2))
    two = np.zeros((2, 2))
    for points, expected in ((one, 0.5), (two, 0.75)):
        hits = np.zeros((5, 5))
        for seed in range(400):
            canvas = render_fractal(points, 5, np.random.default_rng(seed))
            assert canvas.dtype == bool and canvas.shape == (5, 5)
            hits += canvas
        frequency = hits / 400
        assert np.all(frequency[1:4, 1:4] > expected - 0.08) and np.all(frequency[1:4, 1:4] < expected + 0.08)
        assert frequency.sum() == frequency[1:4, 1:4].sum()  # nothing outside the 3x3


def test_render_keeps_aspect_ratio_and_fills_the_long_axis() -> None:
    points = np.stack([np.linspace(0, 10, 1000), np.linspace(0, 1, 1000)], axis=1)
    canvas = render_fractal(points, 50, np.random.default_rng(0))
    rows, cols = np.nonzero(canvas)
    assert cols.min() <= 1 and cols.max() >= 48  # long axis spans the canvas
    assert rows.max() - rows.min() <= 5 + 2  # short axis stays short (1/10 of 49, plus stamps)


def test_random_fractal_mask_seeded_non_empty_and_varied() -> None:
    masks = [random_fractal_mask(64, np.random.default_rng(seed)) for seed in range(6)]
    for mask in masks:
        assert mask.dtype == bool and mask.shape == (64, 64)
        assert mask.mean() >= 0.02
    assert np.array_equal(masks[0], random_fractal_mask(64, np.random.default_rng(0)))
    assert len({mask.tobytes() for mask in masks}) == len(masks)


def test_random_fractal_mask_redraws_degenerate_fractals() -> None:
    # Seed 156's first IFS collapses to a thin curve (1.6 % of the pixels): it is redrawn.
    first = random_fractal_mask(64, np.random.default_rng(156), min_fill=0.0)
    assert first.mean() < 0.02
    redrawn = random_fractal_mask(64, np.random.default_rng(156))
    assert redrawn.mean() >= 0.02
    # When no draw passes, the fullest one is returned, never an emptier one.
    fullest = random_fractal_mask(64, np.random.default_rng(156), min_fill=0.999, max_tries=3)
    assert fullest.mean() >= redrawn.mean()


# --- colour jitter -------------------------------------------------------------------------


def test_color_jitter_validates_and_samples_torchvision_ranges() -> None:
    with pytest.raises(ConfigError, match="brightness"):
        ColorJitter(brightness=-0.1)
    with pytest.raises(ConfigError, match="hue"):
        ColorJitter(hue=0.6)
    rng = np.random.default_rng(0)
    jitter = ColorJitter(brightness=0.2, contrast=1.0, saturation=0.0, hue=0.1)
    for _ in range(200):
        params = jitter.sample(rng)
        assert sorted(params.order) == [0, 1, 2, 3]
        assert 0.8 <= params.brightness <= 1.2
        assert 0.0 <= params.contrast <= 2.0
        assert params.saturation is None
        assert -0.1 <= params.hue <= 0.1


def test_apply_jitter_operations() -> None:
    image = textured(16, 16, seed=1)
    assert np.array_equal(apply_jitter([image], JitterParams())[0], image)

    half = apply_jitter([image], JitterParams(brightness=0.5))[0]
    assert np.abs(half.astype(int) - np.rint(image * 0.5)).max() <= 1

    flat = apply_jitter([image], JitterParams(contrast=0.0))[0]
    assert np.ptp(flat) == 0 and abs(int(flat[0, 0, 0]) - (image @ GREY).mean()) <= 1

    grey = apply_jitter([image], JitterParams(saturation=0.0))[0].astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1
    assert np.abs(grey[..., 0] - image @ GREY).max() <= 1

    primaries = np.array([[[255, 0, 0], [0, 255, 0]]], dtype=np.uint8)
    assert apply_jitter([primaries], JitterParams(hue=0.5))[0].tolist() == [[[0, 255, 255], [255, 0, 255]]]
    assert apply_jitter([primaries], JitterParams(hue=1 / 3))[0].tolist() == [[[0, 255, 0], [0, 0, 255]]]
    assert apply_jitter([primaries], JitterParams(hue=-1 / 3))[0].tolist() == [[[0, 0, 255], [255, 0, 0]]]


def test_apply_jitter_runs_in_the_drawn_order() -> None:
    image = textured(16, 16, seed=2)
    a = apply_jitter([image], JitterParams(order=(BRIGHTNESS, CONTRAST, SATURATION, HUE), brightness=1.8, contrast=0.3))
    b = apply_jitter([image], JitterParams(order=(CONTRAST, BRIGHTNESS, SATURATION, HUE), brightness=1.8, contrast=0.3))
    assert not np.array_equal(a[0], b[0])  # clipping makes the order matter


def test_shared_jitter_keeps_equal_pixels_equal() -> None:
    clean = textured(32, 32, seed=4)
    augmented = clean.copy()
    augmented[8:20, 8:20] = 255 - augmented[8:20, 8:20]  # a different grey mean
    params = JitterParams(order=(CONTRAST, HUE, SATURATION, BRIGHTNESS), brightness=1.1, contrast=0.3, saturation=1.2, hue=0.1)
    clean_j, augmented_j = apply_jitter([clean, augmented], params)
    outside = np.ones((32, 32), dtype=bool)
    outside[8:20, 8:20] = False
    assert np.array_equal(clean_j[outside], augmented_j[outside])
    assert not np.array_equal(clean_j[~outside], augmented_j[~outside])


def test_apply_jitter_rejects_non_rgb_uint8() -> None:
    with pytest.raises(InvalidInputError, match="uint8"):
        apply_jitter([np.zeros((4, 4), dtype=np.uint8)], JitterParams())


# --- resizing helpers: the region-only resize matches OpenCV's --------------------------


@pytest.mark.parametrize(("h", "w", "size"), [(300, 300, 64), (257, 410, 64), (128, 64, 64), (96, 96, 32)])
def test_area_tables_reproduce_cv2_inter_area(h: int, w: int, size: int) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    ours = np.rint(_apply_area(image, (0, 0), _area_table(h, size), _area_table(w, size))).astype(np.uint8)
    reference = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    assert np.abs(ours.astype(int) - reference).max() <= 1


def test_pooled_mask_is_exactly_cv2_area_resize_above_zero() -> None:
    rng = np.random.default_rng(1)
    h, w, size = 300, 257, 64
    rows, cols = _area_table(h, size), _area_table(w, size)
    for _ in range(20):
        cut = int(rng.integers(4, 120))
        ty, tx = int(rng.integers(0, h - cut)), int(rng.integers(0, w - cut))
        shape = rng.random((cut, cut)) < 0.03
        full = np.zeros((h, w), dtype=np.float32)
        full[ty : ty + cut, tx : tx + cut] = shape
        reference = cv2.resize(full, (size, size), interpolation=cv2.INTER_AREA) > 0
        r0, r1 = rows.touching(ty, ty + cut)
        c0, c1 = cols.touching(tx, tx + cut)
        ours = np.zeros((size, size), dtype=bool)
        ours[r0:r1, c0:c1] = _pool_any(shape, (ty, tx), rows.rows(r0, r1), cols.rows(c0, c1))
        assert np.array_equal(ours, reference)


# --- the generator -------------------------------------------------------------------------


def test_synth_config_validation() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        SynthConfig(image_size=16)
    with pytest.raises(ConfigError, match="noise_probability"):
        SynthConfig(noise_probability=1.5)
    with pytest.raises(ConfigError, match="final_jitter"):
        SynthConfig(final_jitter=0.7)
    with pytest.raises(ConfigError, match="dilation_iterations"):
        SynthConfig(dilation_iterations=-1)
    with pytest.raises(ConfigError, match="fractal_points"):
        SynthConfig(fractal_points=10)
    with pytest.raises(ConfigError, match="SynthConfig"):
        FractalAnomalyGenerator({"image_size": 64})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 3), np.float32), np.zeros((8, 64, 3), np.uint8), [[0]]],
)
def test_generator_rejects_bad_images(bad: object) -> None:
    generator = FractalAnomalyGenerator(SynthConfig(image_size=32))
    with pytest.raises(InvalidInputError):
        generator(bad, np.random.default_rng(0))  # type: ignore[arg-type]


def check_sample(sample: AnomalySample, size: int) -> np.ndarray:
    assert sample.clean.shape == sample.augmented.shape == (size, size, 3)
    assert sample.clean.dtype == sample.augmented.dtype == np.uint8
    assert sample.mask.shape == (size, size) and sample.mask.dtype == np.float32
    assert set(np.unique(sample.mask)) <= {0.0, 1.0}
    inside = sample.mask.astype(bool)
    assert inside.any()
    assert np.array_equal(sample.clean[~inside], sample.augmented[~inside])
    assert np.any(sample.clean[inside] != sample.augmented[inside])
    return inside


# (input h, input w, output size): same size, enlarged, shrunk (region-only resize), non-square.
SHAPES = [(64, 64, 64), (40, 48, 64), (150, 150, 64), (64, 96, 64)]


@pytest.mark.parametrize(("h", "w", "size"), SHAPES)
def test_anomaly_samples_are_valid(h: int, w: int, size: int) -> None:
    generator = FractalAnomalyGenerator(SynthConfig(image_size=size))
    image = textured(h, w)
    for seed in range(4):
        sample = generator(image, np.random.default_rng(seed))
        check_sample(sample, size)
        assert sample.placement == "plain"


def test_same_seed_same_sample_different_seed_different_mask() -> None:
    generator = FractalAnomalyGenerator(SynthConfig(image_size=64))
    image = textured(150, 150)
    a = generator(image, np.random.default_rng(11))
    b = generator(image, np.random.default_rng(11))
    for field in ("clean", "augmented", "mask"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    masks = {generator(image, np.random.default_rng(seed)).mask.tobytes() for seed in range(5)}
    assert len(masks) == 5


def test_without_jitter_noise_or_resize_the_clean_image_is_the_input() -> None:
    config = SynthConfig(image_size=64, final_jitter=0.0, noise_probability=0.0, dilation_iterations=0)
    image = textured(64, 64, seed=9)
    sample = FractalAnomalyGenerator(config)(image, np.random.default_rng(0))
    assert np.array_equal(sample.clean, image)
    inside = check_sample(sample, 64)
    # Undilated and unresized, the mask is exactly the pasted pixels.
    changed = np.any(sample.augmented != image, axis=2)
    assert np.all(inside[changed])


def test_dilation_grows_the_mask() -> None:
    image = textured(64, 64, seed=9)
    base = {"image_size": 64, "final_jitter": 0.0, "noise_probability": 0.0}
    thin = FractalAnomalyGenerator(SynthConfig(**base, dilation_iterations=0))(image, np.random.default_rng(3))
    thick = FractalAnomalyGenerator(SynthConfig(**base, dilation_iterations=3))(image, np.random.default_rng(3))
    expected = cv2.dilate(thin.mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=3)
    assert np.array_equal(thick.mask.astype(np.uint8), expected)


def test_noise_is_one_value_for_all_channels_and_only_inside_the_mask() -> None:
    image = textured(64, 64, seed=5) // 2 + 64  # mid-range: noise never clips
    quiet = FractalAnomalyGenerator(SynthConfig(image_size=64, final_jitter=0.0, noise_probability=0.0))
    noisy = FractalAnomalyGenerator(SynthConfig(image_size=64, final_jitter=0.0, noise_probability=1.0, noise_sigma=10.0))
    a = quiet(image, np.random.default_rng(2))
    b = noisy(image, np.random.default_rng(2))
    assert np.array_equal(a.mask, b.mask)
    difference = b.augmented.astype(int) - a.augmented.astype(int)
    inside = a.mask.astype(bool)
    assert not difference[~inside].any()
    unclipped = inside & np.all((a.augmented > 40) & (a.augmented < 215), axis=2)
    assert np.array_equal(difference[unclipped][:, 0], difference[unclipped][:, 1])
    assert np.array_equal(difference[unclipped][:, 0], difference[unclipped][:, 2])
    assert 5.0 < difference[unclipped][:, 0].std() < 15.0


def test_final_jitter_is_the_same_for_clean_and_augmented() -> None:
    # The dilation ring (mask pixels the paste did not touch) is identical before the final
    # jitter, so it must be identical after it: same factors, order and contrast pivot.
    image = textured(64, 64, seed=6)
    base = {"image_size": 64, "final_jitter": 0.5, "noise_probability": 0.0}
    thin = FractalAnomalyGenerator(SynthConfig(**base, dilation_iterations=0))(image, np.random.default_rng(4))
    thick = FractalAnomalyGenerator(SynthConfig(**base, dilation_iterations=3))(image, np.random.default_rng(4))
    assert not np.array_equal(thick.clean, image)
    ring = thick.mask.astype(bool) & ~thin.mask.astype(bool)
    assert ring.sum() > 20
    assert np.array_equal(thick.clean[ring], thick.augmented[ring])
    check_sample(thick, 64)


def test_normal_sample_has_the_same_processing_and_an_empty_mask() -> None:
    generator = FractalAnomalyGenerator(SynthConfig(image_size=64))
    image = textured(150, 150)
    sample = generator.normal(image, np.random.default_rng(0))
    assert sample.placement == "none"
    assert sample.clean.shape == (64, 64, 3) and not sample.mask.any()
    assert np.array_equal(sample.clean, sample.augmented)
    resized = cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)
    assert 0 < np.abs(sample.clean.astype(int) - resized).mean() < 30  # jittered, mildly
    again = generator.normal(image, np.random.default_rng(0))
    assert np.array_equal(sample.clean, again.clean)


def test_object_geometry_measures_the_object() -> None:
    geometry = object_geometry(object_image())
    assert not isinstance(geometry, str)
    assert 17 <= geometry.short_side <= 23  # the disk's diameter is 21 pixels
    rows = geometry.rows / geometry.scale[0]
    cols = geometry.cols / geometry.scale[1]
    assert np.all(np.hypot(rows - 30, cols - 90) <= 12)


def test_object_placement_puts_the_anomaly_on_the_object() -> None:
    image = object_image()
    config = SynthConfig(image_size=128, object_placement=True, dilation_iterations=0)
    generator = FractalAnomalyGenerator(config)
    for seed in range(8):
        sample = generator(image, np.random.default_rng(seed))
        assert sample.placement == "object"
        rows, cols = np.nonzero(sample.mask)
        # centre on the disk (radius 10), cut <= 1.5 * 21, so within 10 + sqrt(2) * 16 px
        assert np.all(np.hypot(rows - 30, cols - 90) <= 10 + 1.5 * 16), seed


def test_object_placement_on_a_large_input_and_near_the_border() -> None:
    image = cv2.resize(object_image(centre=(12, 115)), (400, 400), interpolation=cv2.INTER_NEAREST)
    generator = FractalAnomalyGenerator(SynthConfig(image_size=64, object_placement=True))
    for seed in range(4):
        sample = generator(image, np.random.default_rng(seed))
        assert sample.placement == "object"
        check_sample(sample, 64)


def test_object_placement_falls_back_with_a_reason() -> None:
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    flat[::2, ::2] = 129  # a little texture, still no object
    sample = FractalAnomalyGenerator(SynthConfig(image_size=64, object_placement=True))(flat, np.random.default_rng(0))
    assert sample.placement.startswith("plain (object fallback: no pixel differs")
    assert sample.mask.any()


def test_synth_does_not_import_torch() -> None:
    code = "import sys, fractalad_edge.synth; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- preview -------------------------------------------------------------------------------


def test_save_preview_writes_the_grid(tmp_path) -> None:
    generator = FractalAnomalyGenerator(SynthConfig(image_size=32))
    samples = [generator(textured(48, 48, seed=s), np.random.default_rng(s)) for s in range(3)]
    path = tmp_path / "preview.png"
    save_preview(samples, path)
    written = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(written, preview_grid(samples))
    assert written.shape == (3 * 32 + 4 * 4, 3 * 32 + 4 * 4, 3)
    assert np.array_equal(written[4:36, 40:72], samples[1].clean)
    assert np.array_equal(written[40:72, 40:72], samples[1].augmented)
    assert np.array_equal(written[76:108, 40:72, 0] > 0, samples[1].mask > 0)
    with pytest.raises(InvalidInputError, match="at least one"):
        save_preview([], tmp_path / "empty.png")

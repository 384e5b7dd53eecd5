"""Image reading, dataset discovery and category defaults, on tiny files made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fractalad_edge.data import (
    IMAGE_SUFFIXES,
    MVTEC_AD_CATEGORIES,
    CategoryDefaults,
    TestSample,
    category_defaults,
    category_name,
    default_distillation,
    default_object_placement,
    find_test_samples,
    find_training_images,
    read_image,
    read_image_bgr,
    read_mask,
    to_uint8_rgb,
)
from fractalad_edge.errors import (
    ConfigError,
    DatasetError,
    DatasetNotFoundError,
    ImageReadError,
    InvalidInputError,
    MaskMismatchError,
)


def _write(path: Path, array: np.ndarray) -> Path:
    """Write with OpenCV through imencode so the test itself does not depend on path encoding."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, array)
    assert ok
    encoded.tofile(path)
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- to_uint8_rgb


def test_to_uint8_rgb_grey_becomes_three_equal_channels(rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
    for array in (grey, grey[:, :, None]):
        rgb = to_uint8_rgb(array)
        assert rgb.shape == (5, 7, 3) and rgb.dtype == np.uint8
        for channel in range(3):
            np.testing.assert_array_equal(rgb[:, :, channel], grey)


def test_to_uint8_rgb_reorders_bgr_and_drops_alpha() -> None:
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2], bgra[..., 3] = 10, 20, 30, 0  # fully transparent
    rgb = to_uint8_rgb(bgra, channel_order="bgr")
    np.testing.assert_array_equal(rgb[0, 0], [30, 20, 10])
    assert rgb.flags.c_contiguous
    np.testing.assert_array_equal(to_uint8_rgb(bgra)[0, 0], [10, 20, 30])


def test_to_uint8_rgb_returns_rgb_uint8_input_without_copy(rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    assert to_uint8_rgb(rgb) is rgb


def test_to_uint8_rgb_scales_uint16_float_and_bool() -> None:
    wide = np.array([[0, 257 * 100, 65535, 128]], np.uint16)
    np.testing.assert_array_equal(to_uint8_rgb(wide)[0, :, 0], [0, 100, 255, 0])
    floats = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_uint8_rgb(floats)[0, :, 1], [0, 128, 255])
    flags = np.array([[False, True]])
    np.testing.assert_array_equal(to_uint8_rgb(flags)[0, :, 2], [0, 255])


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((2, 2, 2, 3), np.uint8), "rank 4"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 4, 2), np.uint8), "1, 3 or 4 channels"),
        (np.zeros((3, 8, 8), np.uint8), "1, 3 or 4 channels"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), 255.0), "[0, 1]"),
        (np.zeros((2, 2), np.int32), "dtype int32"),
    ],
)
def test_to_uint8_rgb_rejects_bad_arrays(array: np.ndarray, fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=None) as error:
        to_uint8_rgb(array)
    assert fragment in str(error.value)


def test_to_uint8_rgb_rejects_unknown_channel_order() -> None:
    with pytest.raises(ConfigError, match="channel_order"):
        to_uint8_rgb(np.zeros((2, 2, 3), np.uint8), channel_order="rgba")


# --------------------------------------------------------------------------- read_image


def test_read_image_colour_png_in_rgb_and_bgr(tmp_path: Path) -> None:
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    path = _write(tmp_path / "red.png", bgr)
    rgb = read_image(path)
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(read_image_bgr(path), bgr)


def test_read_image_grey_png(tmp_path: Path, rng: np.random.Generator) -> None:
    grey = rng.integers(0, 256, size=(6, 5), dtype=np.uint8)
    rgb = read_image(_write(tmp_path / "grey.png", grey))
    assert rgb.shape == (6, 5, 3)
    np.testing.assert_array_equal(rgb[:, :, 0], grey)
    np.testing.assert_array_equal(rgb[:, :, 2], grey)


def test_read_image_rgba_png_drops_alpha(tmp_path: Path) -> None:
    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 200, 100, 50
    bgra[..., 3] = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    rgb = read_image(_write(tmp_path / "alpha.png", bgra))
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_array_equal(rgb[3, 3], [50, 100, 200])
    np.testing.assert_array_equal(rgb[0, 0], [50, 100, 200])  # alpha 0: colour kept, not blacked out


def test_read_image_16_bit_png(tmp_path: Path) -> None:
    wide = np.array([[0, 257 * 7, 65535], [1000, 30000, 65000]], np.uint16)
    path = _write(tmp_path / "wide.png", wide)
    assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    rgb = read_image(path)
    expected = np.rint(wide / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(rgb[:, :, 1], expected)


def test_read_image_non_ascii_path(tmp_path: Path) -> None:
    path = _write(tmp_path / "prüfteil_画像.png", np.full((2, 3), 77, np.uint8))
    assert read_image(path)[1, 2, 0] == 77


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_image_refuses_truncated_files(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    noise = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    path = _write(tmp_path / f"whole{suffix}", noise)
    read_image(path)  # the complete file reads
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as error:
        read_image(cut)
    assert str(cut) in str(error.value)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_read_image_accepts_trailing_bytes(tmp_path: Path, rng: np.random.Generator, suffix: str) -> None:
    noise = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    path = _write(tmp_path / f"padded{suffix}", noise)
    path.write_bytes(path.read_bytes() + b"\x00" * 40)
    assert read_image(path).shape == (16, 16, 3)


def test_read_image_missing_empty_and_garbage(tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="does not exist") as error:
        read_image(missing)
    assert str(missing) in str(error.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(empty)
    garbage = tmp_path / "notes.png"
    garbage.write_bytes(b"this is a text file, not an image\n" * 10)
    with pytest.raises(ImageReadError, match="cannot be decoded") as error:
        read_image(garbage)
    assert str(garbage) in str(error.value)
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


# --------------------------------------------------------------------------- read_mask


def test_read_mask_any_nonzero_is_anomalous(tmp_path: Path) -> None:
    values = np.array([[0, 255, 1], [0, 0, 128]], np.uint8)
    mask = read_mask(_write(tmp_path / "m.png", values), expected_shape=(2, 3))
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, values != 0)
    colour = np.zeros((2, 3, 3), np.uint8)
    colour[0, 1, 2] = 9
    np.testing.assert_array_equal(
        read_mask(_write(tmp_path / "c.png", colour), expected_shape=(2, 3)),
        [[False, True, False], [False, False, False]],
    )


def test_read_mask_size_mismatch_names_both(tmp_path: Path) -> None:
    path = _write(tmp_path / "000_mask.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(MaskMismatchError) as error:
        read_mask(path, expected_shape=(5, 4), image_path=tmp_path / "000.png")
    text = str(error.value)
    assert "4x5" in text and "5x4" in text and "000_mask.png" in text and "000.png" in text


def test_read_mask_rejects_bad_expected_shape(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="expected_shape"):
        read_mask(path, expected_shape=(2, 0))


# --------------------------------------------------------------------------- datasets


@pytest.fixture
def mvtec_tree(tmp_path: Path) -> Path:
    """A tiny MVTec AD category: 3 train, 2 good test, 2 'crack' with masks, 1 'dent' without."""
    root = tmp_path / "widget"
    pixel = np.full((8, 8), 100, np.uint8)
    for name in ("002.png", "000.png", "001.png"):
        _write(root / "train" / "good" / name, pixel)
    (root / "train" / "good" / "readme.txt").write_text("not an image")
    (root / "train" / "good" / "._000.png").write_bytes(b"macOS resource fork")
    for name in ("000.png", "001.png"):
        _write(root / "test" / "good" / name, pixel)
    for name in ("001.png", "000.png"):
        _write(root / "test" / "crack" / name, pixel)
        _write(root / "ground_truth" / "crack" / name.replace(".png", "_mask.png"), pixel)
    _write(root / "test" / "dent" / "000.png", pixel)
    return root


def test_find_training_images_mvtec_layout(mvtec_tree: Path) -> None:
    images = find_training_images(mvtec_tree)
    assert [p.name for p in images] == ["000.png", "001.png", "002.png"]
    assert all(p.parent == mvtec_tree / "train" / "good" for p in images)
    assert find_training_images(mvtec_tree / "train" / "good") == images
    assert find_training_images(str(mvtec_tree)) == images


def test_find_training_images_never_reads_test(mvtec_tree: Path) -> None:
    for folder in (mvtec_tree / "test", mvtec_tree / "test" / "good"):
        with pytest.raises(DatasetError, match="test"):
            find_training_images(folder)
    (mvtec_tree / "train" / "good").rename(mvtec_tree / "train" / "ok")
    with pytest.raises(DatasetError, match="train/good|train.*good"):
        find_training_images(mvtec_tree)


def test_find_training_images_plain_folder(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    for name in ("b.JPG", "a.png", "c.bmp"):
        _write(folder / name, np.zeros((4, 4, 3), np.uint8))
    _write(folder / "sub" / "nested.png", np.zeros((4, 4), np.uint8))
    images = find_training_images(folder)
    assert [p.name for p in images] == ["a.png", "b.JPG", "c.bmp"]


def test_find_training_images_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        find_training_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as error:
        find_training_images(empty)
    text = str(error.value)
    assert str(empty) in text and ".png" in text and ".tiff" in text
    a_file = _write(tmp_path / "x.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match="is a file"):
        find_training_images(a_file)


def test_find_test_samples_mvtec_layout(mvtec_tree: Path) -> None:
    samples = find_test_samples(mvtec_tree)
    summary = [(s.defect, s.image_path.name, s.label, s.mask_path.name if s.mask_path else None) for s in samples]
    assert summary == [
        ("good", "000.png", 0, None),
        ("good", "001.png", 0, None),
        ("crack", "000.png", 1, "000_mask.png"),
        ("crack", "001.png", 1, "001_mask.png"),
        ("dent", "000.png", 1, None),  # no ground_truth/dent: image-level only
    ]
    for sample in samples:
        if sample.mask_path is not None:
            assert read_mask(sample.mask_path, expected_shape=(8, 8)).all()


def test_find_test_samples_missing_mask_is_named(mvtec_tree: Path) -> None:
    (mvtec_tree / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(MaskMismatchError) as error:
        find_test_samples(mvtec_tree)
    assert "001_mask.png" in str(error.value) and "001.png" in str(error.value)


def test_find_test_samples_errors(tmp_path: Path, mvtec_tree: Path) -> None:
    with pytest.raises(DatasetNotFoundError):
        find_test_samples(tmp_path / "missing")
    with pytest.raises(DatasetError, match="no 'test' folder"):
        find_test_samples(mvtec_tree / "train")
    with pytest.raises(DatasetError, match="pass its parent"):
        find_test_samples(mvtec_tree / "test")
    bare = tmp_path / "bare"
    (bare / "test" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No test images"):
        find_test_samples(bare)


def test_test_sample_validates_label() -> None:
    with pytest.raises(DatasetError, match="label"):
        TestSample(image_path=Path("x.png"), label=2, defect="crack", mask_path=None)
    with pytest.raises(DatasetError, match="does not match"):
        TestSample(image_path=Path("x.png"), label=0, defect="crack", mask_path=None)


def test_category_name(mvtec_tree: Path) -> None:
    assert category_name(mvtec_tree) == "widget"
    assert category_name(mvtec_tree / "train" / "good") == "widget"
    assert category_name(str(mvtec_tree) + "/") == "widget"


# --------------------------------------------------------------------------- categories


def test_category_defaults_follow_the_method() -> None:
    assert len(MVTEC_AD_CATEGORIES) == 15
    for texture in ("carpet", "grid", "leather", "tile", "wood"):
        assert category_defaults(texture) == CategoryDefaults(distillation=False, object_placement=False, known=True)
    for placed in ("capsule", "pill", "screw", "toothbrush", "zipper"):
        assert category_defaults(placed) == CategoryDefaults(distillation=True, object_placement=True, known=True)
    assert category_defaults("bottle") == CategoryDefaults(distillation=True, object_placement=False, known=True)
    assert category_defaults("Metal-Nut").known
    assert category_defaults("magnetic_tile") == CategoryDefaults(distillation=True, object_placement=False, known=False)
    assert default_distillation("my_part") and not default_object_placement("my_part")
    assert not default_distillation("Wood") and default_object_placement(" SCREW ")


def test_category_defaults_reject_non_strings() -> None:
    with pytest.raises(ConfigError, match="string"):
        default_distillation(None)  # type: ignore[arg-type]


def test_image_suffixes_are_lower_case_with_dot() -> None:
    assert all(s.startswith(".") and s == s.lower() for s in IMAGE_SUFFIXES)

"""Finding training images and test samples on disk.

Two layouts are supported:

- MVTec AD: ``<category>/train/good/*``, ``<category>/test/<defect>/*`` and
  ``<category>/ground_truth/<defect>/<stem>_mask.png``;
- a plain folder of normal images (files directly inside it, no recursion), for
  training on a customer's own parts.

Listings are sorted by file name so runs are reproducible. Training listings never
include anything from a ``test`` folder: training on test images would inflate every
metric without anyone noticing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fractalad_edge.data.images import IMAGE_SUFFIXES
from fractalad_edge.errors import DatasetError, DatasetNotFoundError, MaskMismatchError

__all__ = ["GOOD", "TestSample", "category_name", "find_test_samples", "find_training_images"]

GOOD = "good"
"""Folder name of defect-free images in the MVTec AD layout."""

_MVTEC_LAYOUT = (
    "<category>/train/good/*.png (normal images), <category>/test/<defect>/*.png "
    "(good and defective test images) and <category>/ground_truth/<defect>/<stem>_mask.png"
)


@dataclass(frozen=True, kw_only=True)
class TestSample:
    """One test image: its label (0 good, 1 defective), defect folder and optional mask."""

    __test__ = False  # not a pytest test class, despite the name

    image_path: Path
    label: int
    defect: str
    mask_path: Path | None

    def __post_init__(self) -> None:
        if self.label not in (0, 1) or isinstance(self.label, bool):
            msg = f"TestSample.label must be 0 (good) or 1 (defective), got {self.label!r}."
            raise DatasetError(msg)
        if (self.label == 0) != (self.defect == GOOD):
            msg = (
                f"TestSample for {str(self.image_path)!r}: label {self.label} does not match defect "
                f"{self.defect!r}; label 0 goes with defect {GOOD!r} and label 1 with any other defect."
            )
            raise DatasetError(msg)


def _image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files (``._x.png``) skipped."""
    return sorted(
        (
            entry
            for entry in folder.iterdir()
            if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda entry: entry.name,
    )


def _require_folder(root: str | Path, what: str) -> Path:
    folder = Path(root)
    if not folder.exists():
        msg = f"The {what} folder {str(folder)!r} does not exist. Check the path."
        raise DatasetNotFoundError(msg)
    if not folder.is_dir():
        msg = f"The {what} path {str(folder)!r} is a file, not a folder; pass the folder that holds the images."
        raise DatasetError(msg)
    return folder


def find_training_images(root: str | Path) -> list[Path]:
    """List the normal training images under ``root``, sorted by file name.

    ``root`` may be an MVTec AD category (``root/train/good`` is used), that
    ``train/good`` folder itself, or any plain folder of normal images (only files
    directly inside it). A folder named ``test``, or one inside a ``test`` folder, is
    refused so that test images can never leak into training.
    """
    folder = _require_folder(root, "training")
    resolved = folder.resolve()
    if resolved.name == "test" or resolved.parent.name == "test":
        msg = (
            f"Refusing to train on {str(folder)!r}: it is (inside) a 'test' folder, and test images must "
            f"never be used for training. Pass the category folder (MVTec AD layout: {_MVTEC_LAYOUT}) "
            "or a folder of normal images that is not named or inside 'test'."
        )
        raise DatasetError(msg)
    train_good = folder / "train" / GOOD
    if train_good.is_dir():
        folder = train_good
    elif (folder / "test").is_dir() or (folder / "train").is_dir():
        msg = (
            f"{str(folder)!r} looks like an MVTec AD category (it has a 'train' or 'test' folder) but "
            f"{str(train_good)!r} does not exist. Expected layout: {_MVTEC_LAYOUT}."
        )
        raise DatasetError(msg)
    images = _image_files(folder)
    if not images:
        msg = (
            f"No training images found in {str(folder)!r}. Searched the files directly in that folder "
            f"(no subfolders) with suffixes {', '.join(IMAGE_SUFFIXES)}. Pass an MVTec AD category "
            f"({_MVTEC_LAYOUT}) or a folder that directly holds normal images."
        )
        raise DatasetError(msg)
    return images


def _find_mask(mask_folder: Path, image: Path) -> Path | None:
    """The mask of ``image``: ``<stem>_mask`` with any image suffix, .png preferred."""
    for suffix in IMAGE_SUFFIXES:
        candidate = mask_folder / f"{image.stem}_mask{suffix}"
        if candidate.is_file():
            return candidate
    return None


def find_test_samples(root: str | Path) -> list[TestSample]:
    """List the test images of an MVTec AD category with labels and mask paths.

    Order: ``good`` first, then the defect folders by name; files by name inside each.
    Good images have no mask. A defect folder without ``ground_truth/<defect>/`` has no
    masks (image-level evaluation only); when that folder exists every defective image
    must have its ``<stem>_mask`` file there, or :class:`MaskMismatchError` names the one
    that is missing.
    """
    folder = _require_folder(root, "dataset")
    test_folder = folder / "test"
    if not test_folder.is_dir():
        hint = " It is itself a 'test' folder: pass its parent." if folder.name == "test" else ""
        msg = f"{str(folder)!r} has no 'test' folder.{hint} Expected the MVTec AD layout: {_MVTEC_LAYOUT}."
        raise DatasetError(msg)
    defects = sorted(
        (entry.name for entry in test_folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda name: (name != GOOD, name),
    )
    samples: list[TestSample] = []
    for defect in defects:
        images = _image_files(test_folder / defect)
        if defect == GOOD:
            samples.extend(TestSample(image_path=image, label=0, defect=GOOD, mask_path=None) for image in images)
            continue
        mask_folder = folder / "ground_truth" / defect
        has_masks = mask_folder.is_dir()
        for image in images:
            mask = _find_mask(mask_folder, image) if has_masks else None
            if has_masks and mask is None:
                msg = (
                    f"Defective test image {str(image)!r} has no mask: expected "
                    f"{str(mask_folder / (image.stem + '_mask.png'))!r}. Add the mask, or remove the folder "
                    f"{str(mask_folder)!r} to evaluate this defect at image level only."
                )
                raise MaskMismatchError(msg)
            samples.append(TestSample(image_path=image, label=1, defect=defect, mask_path=mask))
    if not samples:
        msg = (
            f"No test images found under {str(test_folder)!r}. Test images must sit in subfolders "
            f"test/<defect>/ (test/good/ for normal ones) with suffixes {', '.join(IMAGE_SUFFIXES)}."
        )
        raise DatasetError(msg)
    return samples


def category_name(root: str | Path) -> str:
    """The category's folder name (``.../bottle`` -> ``bottle``), used to look up defaults.

    ``.../bottle/train/good`` also gives ``bottle``.
    """
    resolved = Path(root).resolve()
    if resolved.name == GOOD and resolved.parent.name == "train":
        return resolved.parent.parent.name
    return resolved.name

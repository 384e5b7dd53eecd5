"""report.html: the gallery's order (misses first), escaping, self-containment, thumbnail size,
and, where Chromium is installed, that a real browser shows the gallery and runs its controls."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from fractalad_edge.artifact import ArtifactMetadata, InputSpec, ModelFile, ScoreCalibration, ScoreSpec
from fractalad_edge.bench.config import BenchConfig
from fractalad_edge.bench.report import BenchReport, ConfigResult, ReportFiles
from fractalad_edge.bench.system import capture_environment
from fractalad_edge.data.datasets import TestSample
from fractalad_edge.errors import ConfigError
from fractalad_edge.report import gallery_cards, render_html, write_bench_html, write_html
from fractalad_edge.report.gallery import THUMBNAIL_HEIGHT, thumbnail
from fractalad_edge.report.html import ReportPage
from fractalad_edge.report.tables import defect_table
from fractalad_edge.threshold_rule import ThresholdRule

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32  # model input and map side
# A real file name on Linux: folder "<script>alert(1)<" holding "script>.png".
HOSTILE = "<script>alert(1)</script>.png"


@dataclass(frozen=True)
class _TestSet:
    samples: list[TestSample]
    images: list[np.ndarray]
    masks: np.ndarray


def _metadata(threshold: float = 0.5) -> ArtifactMetadata:
    return ArtifactMetadata(
        format="torch", precision="fp32", runtime="torch", model={"backbone": "efficientnet_lite0"},
        input=InputSpec(height=SIZE, width=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        score=ScoreSpec(reduction="max"), files=(ModelFile(path="model.safetensors", sha256="0" * 64),),
        calibration=ScoreCalibration(
            image_threshold=threshold, image_min=0.0, image_max=1.0, pixel_threshold=0.5, pixel_min=0.0, pixel_max=1.0,
            rule=ThresholdRule(), source="synthetic",
        ),
    )


# (file name, defect folder, max of its map): with threshold 0.5 the margins are
# good/a +0.3, good/b -0.25 (false alarm), scratch/c -0.2 and scratch/d -0.4 (false negatives),
# scratch/e +0.05, scratch/f +0.4.
_IMAGES = [("a.png", "good", 0.2), ("b.png", "good", 0.75), ("c.png", "scratch", 0.3), ("d.png", "scratch", 0.1),
           ("e.png", "scratch", 0.55), ("f.png", "scratch", 0.9)]
_WORST_FIRST = ["scratch/d.png", "good/b.png", "scratch/c.png", "scratch/e.png", "good/a.png", "scratch/f.png"]


def _test_set(tmp_path: Path, images=_IMAGES) -> tuple[_TestSet, np.ndarray]:
    rng = np.random.default_rng(0)
    samples, frames, masks, maps = [], [], [], []
    for name, defect, peak in images:
        samples.append(TestSample(image_path=tmp_path / "test" / defect / name, label=int(defect != "good"), defect=defect, mask_path=None))
        frames.append(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        mask = np.zeros((SIZE, SIZE), bool)
        if defect != "good":
            mask[8:16, 8:16] = True
        masks.append(mask)
        anomaly = np.full((SIZE, SIZE), peak / 2, np.float32)
        anomaly[10, 10] = peak
        maps.append(anomaly)
    return _TestSet(samples, frames, np.stack(masks)), np.stack(maps)


class _Page(HTMLParser):
    """Cards (their data-* attributes, in document order), script tags, and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.groups: list[str] = []
        self.scripts = 0
        self.links: list[str] = []
        self.handlers: list[str] = []
        self.gallery: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.handlers += [k for k in values if k.startswith("on")]
        if tag == "script":
            self.scripts += 1
        if "card" in values.get("class", "").split():
            self.cards.append(values)
        if "group" in values.get("class", "").split():
            self.groups.append(values["data-defect"])
        if values.get("id") == "gallery":
            self.gallery = values
        self.links += [values[k] for k in ("src", "href") if k in values]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_cards_put_misses_first_the_furthest_wrong_at_the_top(tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    cards = gallery_cards(test_set, maps, _metadata())
    assert [c.name for c in cards] == _WORST_FIRST
    assert [c.outcome for c in cards] == ["false negative", "false alarm", "false negative", "caught", "passed", "caught"]
    assert all(c.threshold == 0.5 for c in cards) and cards[0].score == pytest.approx(0.1)
    # at 0.25, c becomes a catch and leaves the misses; b (0.5 wrong) now leads d (0.15 wrong)
    moved = gallery_cards(test_set, maps, _metadata(threshold=0.25))
    assert [c.name for c in moved][:2] == ["good/b.png", "scratch/d.png"]
    assert [c.miss for c in moved] == [True, True, False, False, False, False]
    assert moved[-1].name == "scratch/f.png"  # the clearest call (0.65 above) is last


def test_page_groups_by_defect_type_worst_group_first_and_keeps_the_order(tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    cards = gallery_cards(test_set, maps, _metadata())
    page = _parse(render_html(ReportPage(title="t", cards=tuple(cards))))
    assert page.groups == ["scratch", "good"]  # the worst miss (scratch/d) leads
    names = [c["data-name"] for c in page.cards]
    assert names == [n for n in _WORST_FIRST if n.startswith("scratch/")] + [n for n in _WORST_FIRST if n.startswith("good/")]
    ranks = {c["data-name"]: int(c["data-rank"]) for c in page.cards}
    assert [name for name, _ in sorted(ranks.items(), key=lambda kv: kv[1])] == _WORST_FIRST
    assert [c["data-miss"] for c in page.cards] == ["1", "1", "0", "0", "1", "0"]


def test_file_names_cannot_inject_markup(tmp_path: Path) -> None:
    hostile_folder, hostile_file = HOSTILE.split("/", 1)[0], HOSTILE.split("/", 1)[1]
    attribute_breaker = '"><img src=x onerror=alert(2)>.png'
    for folder, name in ((hostile_folder, hostile_file), ("scratch", attribute_breaker)):  # both exist on disk
        (tmp_path / "test" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "test" / folder / name).write_bytes(b"")
    images = [*_IMAGES, (hostile_file, hostile_folder, 0.9), (attribute_breaker, "scratch", 0.1)]
    test_set, maps = _test_set(tmp_path, images)
    cards = gallery_cards(test_set, maps, _metadata())
    assert HOSTILE in [c.name for c in cards]
    text = render_html(ReportPage(title=HOSTILE, summary=(HOSTILE,), cards=tuple(cards)))
    page = _parse(text)
    assert page.scripts == 1  # only the page's own
    assert page.handlers == []  # no onerror= or any other handler attribute made it in
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in text  # shown as text
    names = [c["data-name"] for c in page.cards]
    assert HOSTILE in names and f"scratch/{attribute_breaker}" in names  # attributes round-trip exactly
    assert hostile_folder in page.groups


def test_page_is_self_contained(tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    page_text = render_html(ReportPage(title="t", cards=tuple(gallery_cards(test_set, maps, _metadata())), plot_png=b"\x89PNG"))
    page = _parse(page_text)
    assert page.links and all(link.startswith("data:image/") for link in page.links)
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page_text.replace("http-equiv", ""))
    assert "default-src 'none'" in page_text  # the browser refuses anything that would leave the page


def test_thumbnails_are_small_jpegs_with_the_outline(tmp_path: Path) -> None:
    size = 256
    yy, xx = np.mgrid[0:900, 0:900]
    image = np.dstack([(xx / 4) % 255, (yy / 4) % 255, np.full_like(xx, 120)]).astype(np.uint8)  # a 900 x 900 camera frame
    anomaly = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), bool)
    mask[100:140, 100:160] = True
    data = thumbnail(image, anomaly, mask)
    assert data[:2] == b"\xff\xd8" and len(data) < 25_000  # 83 of them stay a few MB
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (THUMBNAIL_HEIGHT, 2 * THUMBNAIL_HEIGHT, 3)
    # the ground-truth outline is drawn in white on the heat map (right panel), not on the image
    scale = THUMBNAIL_HEIGHT / size
    edge = decoded[round(100 * scale), THUMBNAIL_HEIGHT + round(130 * scale)]
    assert edge.min() > 180
    assert decoded[round(100 * scale), round(130 * scale)].min() < 180


def test_a_limit_keeps_the_worst_cards_and_counts_the_rest(tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    cards = gallery_cards(test_set, maps, _metadata(), limit=3)
    assert [c.name for c in cards] == _WORST_FIRST  # every image is still counted, in the same order
    assert [c.thumbnail is not None for c in cards] == [True, True, True, False, False, False]
    text = render_html(ReportPage(title="t", cards=tuple(cards), tables=(defect_table(cards, {}),)))
    page = _parse(text)
    assert [c["data-name"] for c in page.cards] == ["scratch/d.png", "scratch/c.png", "good/b.png"]
    assert "The 3 correct decisions furthest from the threshold are counted, not shown" in text
    assert "<td>scratch</td><td>4</td><td>2 missed</td>" in text  # the table counts all four


def test_gallery_refuses_maps_that_do_not_match_the_images(tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    with pytest.raises(ConfigError, match="one \\(H, W\\) anomaly map per test image"):
        gallery_cards(test_set, maps[:3], _metadata())


def test_bench_page_embeds_the_plot_and_escapes_row_reasons(tmp_path: Path) -> None:
    failed = ConfigResult(
        name="tensorrt-fp32", runtime="tensorrt", precision="fp32", device="cuda", format="tensorrt",
        status="failed: <b>no GPU</b>",
    )
    (tmp_path / "report.png").write_bytes(b"\x89PNG-not-really")
    report = BenchReport(
        category="widget", run_dir="runs/widget", data=str(tmp_path / "data"), model={}, input_size=SIZE, macs=None,
        test_images=6, test_anomalous=3, test_images_available=6, reference=None, config=BenchConfig(),
        environment=capture_environment(), results=(failed,), seconds=1.0,
        files=ReportFiles(markdown=str(tmp_path / "report.md"), json=str(tmp_path / "report.json"), png=str(tmp_path / "report.png")),
    )
    text = (write_bench_html(report, tmp_path)).read_text()
    assert "failed: &lt;b&gt;no GPU&lt;/b&gt;" in text and "<b>no GPU" not in text
    assert "data:image/png;base64,iVBORy1ub3QtcmVhbGx5" in text  # the plot, inline
    assert 'id="gallery"' not in text  # no working configuration: no gallery


# --------------------------------------------------------------------------- a real browser


def _screenshot_script():
    spec = importlib.util.spec_from_file_location("report_screenshot", ROOT / "scripts" / "report_screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def browser():
    script = _screenshot_script()
    if script.find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set CHROMIUM)")
    return script


def test_chromium_shows_the_gallery_and_its_controls_work(browser, tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    cards = gallery_cards(test_set, maps, _metadata())
    report = write_html(ReportPage(title="widget", cards=tuple(cards)), tmp_path / "eval")

    page = _parse(browser.dump_dom(report))
    assert page.gallery.get("data-view") == "rank grouped"  # the page's script ran
    assert [c["data-name"] for c in page.cards][:1] == ["scratch/d.png"] and len(page.cards) == len(_IMAGES)

    # the view in the URL: one flat list by score, misses only
    page = _parse(browser.dump_dom(report, view="sort=score-desc&group=0&misses"))
    assert page.gallery.get("data-view") == "score-desc flat misses"
    visible = [c["data-name"] for c in page.cards if "hidden" not in c]
    assert visible == ["good/b.png", "scratch/c.png", "scratch/d.png"]
    assert [c["data-name"] for c in page.cards] == [n for n, _, _ in sorted(
        ((f"{d}/{n}", d, p) for n, d, p in _IMAGES), key=lambda item: -item[2])]


def test_chromium_screenshot_shows_the_thumbnails(browser, tmp_path: Path) -> None:
    test_set, maps = _test_set(tmp_path)
    report = write_html(ReportPage(title="widget", cards=tuple(gallery_cards(test_set, maps, _metadata()))), tmp_path)
    shot = browser.screenshot(report, tmp_path / "shot.png", width=900, height=700)
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (700, 900)
    # the thumbnails are decoded and drawn: saturated colour (image and heat map) over much of the page
    saturated = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1] > 100
    assert saturated.sum() > 4 * 320 * 160 // 2  # half of the four cards' images (shown at 320 x 160)
    # misses are marked in red (#d62728)
    red = (np.abs(image.astype(int) - (0x28, 0x27, 0xD6)).sum(axis=2) < 30)
    assert red.sum() > 200

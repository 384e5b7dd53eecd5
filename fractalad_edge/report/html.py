"""Render a report page as one self-contained HTML file: no network, no CDN, images inline.

Every string that comes from outside this module (file names, defect folders, runtime
notes, error messages in a bench row) goes through :func:`html.escape`, in text and in
attributes alike, so a file named ``<script>...</script>.png`` shows as text. The sort and
filter controls are a few lines of plain JavaScript that only move the cards already in the
page; without JavaScript the page still shows every card in its default order.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fractalad_edge.outputs import atomic_write_text
from fractalad_edge.report.gallery import GalleryCard, misses_label
from fractalad_edge.report.tables import Table

REPORT_FILENAME = "report.html"


@dataclass(frozen=True, kw_only=True)
class ReportPage:
    """What one report.html shows, top to bottom."""

    title: str
    summary: tuple[str, ...] = ()  # one line each, under the title
    tables: tuple[Table, ...] = ()
    plot_png: bytes | None = None  # the latency x accuracy plot
    plot_caption: str = ""
    gallery_caption: str = ""
    cards: tuple[GalleryCard, ...] = ()  # in display order (worst first); those without a thumbnail are counted only
    footer: str = ""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_LONG_CELL = 40  # characters; longer cells (a failed row's reason) wrap instead of widening the table


def _table(table: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f'<td class="long">{_e(c)}</td>' if len(c) > _LONG_CELL else f"<td>{_e(c)}</td>" for c in row) + "</tr>"
        for row in table.rows
    )
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return (
        f'<div class="table"><table><caption>{_e(table.caption)}</caption><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>{note}</div>"
    )


_OUTCOME_CLASS = {"false negative": "fn", "false alarm": "fp", "caught": "tp", "passed": "tn"}


def _card(card: GalleryCard, rank: int, thumbnail: bytes) -> str:
    outcome = card.outcome
    css = _OUTCOME_CLASS[outcome]
    decision = "anomalous" if card.anomalous else "good"
    return (
        f'<figure class="card {css}" data-name="{_e(card.name)}" data-defect="{_e(card.defect)}" '
        f'data-score="{card.score!r}" data-rank="{rank}" data-miss="{int(card.miss)}">'
        f'<img src="{_data_uri("image/jpeg", thumbnail)}" alt="{_e(card.name)}">'
        f'<figcaption><div class="name" title="{_e(card.name)}">{_e(card.name)}</div>'
        f'<div class="outcome">{_e(outcome)}</div>'
        f"<dl><dt>score</dt><dd>{card.score:.4f}</dd><dt>threshold</dt><dd>{card.threshold:.4f}</dd>"
        f"<dt>decision</dt><dd>{decision}</dd></dl></figcaption></figure>"
    )


def _group_order(cards: Sequence[GalleryCard]) -> list[str]:
    """Defect types ordered by their first (worst) card, so the group holding the worst miss leads."""
    order: list[str] = []
    for card in cards:
        if card.defect not in order:
            order.append(card.defect)
    return order


def _gallery(page: ReportPage) -> str:
    if not page.cards:
        return ""
    sections = []
    for defect in _group_order(page.cards):
        members = [(rank, card) for rank, card in enumerate(page.cards) if card.defect == defect]
        count = f"{len(members)} images, {misses_label(defect, sum(card.miss for _, card in members))}"
        hidden = sum(card.thumbnail is None for _, card in members)
        count += f" ({hidden} clear calls not shown)" if hidden else ""
        shown = "".join(_card(card, rank, card.thumbnail) for rank, card in members if card.thumbnail is not None)
        sections.append(
            f'<section class="group" data-defect="{_e(defect)}"><h3>{_e(defect)} <span class="count">{_e(count)}</span></h3>'
            f'<div class="cards">{shown}</div></section>'
        )
    misses = [c for c in page.cards if c.miss]
    false_negatives = sum(c.outcome == "false negative" for c in misses)
    false_alarms = len(misses) - false_negatives
    headline = (
        f"{len(page.cards)} images: {false_negatives} false negative{'s' * (false_negatives != 1)}, "
        f"{false_alarms} false alarm{'s' * (false_alarms != 1)}."
    )
    hidden = sum(card.thumbnail is None for card in page.cards)
    if hidden:
        headline += (
            f" The {hidden} correct decisions furthest from the threshold are counted, not shown "
            f"(the gallery keeps the worst {len(page.cards) - hidden})."
        )
    controls = (
        '<div class="controls"><label>sort <select id="sort">'
        '<option value="rank">worst misses first</option><option value="score-desc">score, high to low</option>'
        '<option value="score-asc">score, low to high</option><option value="name">name</option></select></label>'
        '<label><input type="checkbox" id="group" checked> group by defect type</label>'
        '<label><input type="checkbox" id="misses"> misses only</label></div>'
    )
    return (
        f'<section id="gallery-section"><h2>Gallery</h2><p class="caption">{_e(page.gallery_caption)}</p>'
        f'<p class="headline">{_e(headline)}</p>{controls}'
        f'<div id="gallery">{"".join(sections)}<div class="cards" id="flat" hidden></div></div></section>'
    )


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:16px 24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:16px 0 6px}
.summary p{margin:2px 0;color:#444}.tables{display:flex;flex-wrap:wrap;gap:0 32px;align-items:flex-start}.note{max-width:560px}table{border-collapse:collapse;margin:8px 0;background:#fff;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:4px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;white-space:nowrap}
td.long{white-space:normal;min-width:18em;max-width:36em}.table{max-width:100%;overflow-x:auto}
th{background:#f0f0f0}.note,.caption{color:#555;margin:2px 0 10px}.plot img{max-width:100%;border:1px solid #ddd;background:#fff}
.controls{display:flex;gap:18px;align-items:center;margin:8px 0;position:sticky;top:0;background:#fafafa;padding:6px 0;z-index:1}
.headline{font-weight:600}.count{font-weight:400;color:#666;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{margin:0;background:#fff;border:1px solid #ccc;border-left:6px solid #9a9;border-radius:4px;padding:6px;width:320px}
.card img{display:block;width:320px;height:160px;object-fit:contain;background:#000;cursor:zoom-in}
.card.big{width:auto}.card.big img{width:auto;height:auto;max-width:100%;cursor:zoom-out}
.card.fn,.card.fp{border-color:#d62728;border-left-color:#d62728;background:#fff4f4}
.name{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;margin-top:4px}
.outcome{font-weight:700;text-transform:uppercase;font-size:12px;letter-spacing:.03em}.fn .outcome,.fp .outcome{color:#d62728}
dl{display:grid;grid-template-columns:auto 1fr auto 1fr auto 1fr;gap:0 6px;margin:2px 0 0;font-size:12px}dt{color:#666}dd{margin:0;font-variant-numeric:tabular-nums}
footer{margin:24px 0 8px;color:#777;font-size:12px}
"""

# Moves the cards already in the page; reads only data-* attributes (numbers and escaped text).
_JS = """
(function () {
  var gallery = document.getElementById('gallery');
  if (!gallery) return;
  var cards = Array.prototype.slice.call(gallery.querySelectorAll('.card'));
  var groups = Array.prototype.slice.call(gallery.querySelectorAll('.group'));
  var flat = document.getElementById('flat');
  var sort = document.getElementById('sort'), group = document.getElementById('group'), misses = document.getElementById('misses');
  var by = {
    'rank': function (a, b) { return a.dataset.rank - b.dataset.rank; },
    'score-desc': function (a, b) { return b.dataset.score - a.dataset.score; },
    'score-asc': function (a, b) { return a.dataset.score - b.dataset.score; },
    'name': function (a, b) { return a.dataset.name < b.dataset.name ? -1 : a.dataset.name > b.dataset.name ? 1 : 0; }
  };
  function render() {
    var sorted = cards.slice().sort(by[sort.value]);
    sorted.forEach(function (card) {
      card.hidden = misses.checked && card.dataset.miss !== '1';
      var home = group.checked ? groups.filter(function (g) { return g.dataset.defect === card.dataset.defect; })[0] : null;
      (home ? home.querySelector('.cards') : flat).appendChild(card);
    });
    flat.hidden = group.checked;
    groups.forEach(function (g) {
      g.hidden = !group.checked || !g.querySelector('.card:not([hidden])');
    });
    gallery.setAttribute('data-view', sort.value + (group.checked ? ' grouped' : ' flat') + (misses.checked ? ' misses' : ''));
  }
  // A link can carry the view: report.html#sort=score-desc&group=0&misses=1
  location.hash.slice(1).split('&').forEach(function (pair) {
    var kv = pair.split('='), value = decodeURIComponent(kv[1] || '1');
    if (kv[0] === 'sort' && by[value]) sort.value = value;
    if (kv[0] === 'group') group.checked = value !== '0';
    if (kv[0] === 'misses') misses.checked = value !== '0';
  });
  [sort, group, misses].forEach(function (control) { control.addEventListener('change', render); });
  gallery.addEventListener('click', function (event) {  // a card at its full size, and back
    var card = event.target.closest('.card');
    if (card) card.classList.toggle('big');
  });
  render();
})();
"""


def render_html(page: ReportPage) -> str:
    """The whole page as one string; images are data: URIs, style and script are inline."""
    summary = "".join(f"<p>{_e(line)}</p>" for line in page.summary)
    tables = "".join(_table(t) for t in page.tables)
    plot = ""
    if page.plot_png is not None:
        plot = (
            f'<section class="plot"><h2>Latency x accuracy</h2><p class="caption">{_e(page.plot_caption)}</p>'
            f'<img src="{_data_uri("image/png", page.plot_png)}" alt="latency x accuracy plot"></section>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No request may leave the page: images are inline, nothing is fetched.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(page.title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{_e(page.title)}</h1><div class="summary">{summary}</div></header>'
        f'<section id="metrics"><h2>Metrics</h2><div class="tables">{tables}</div></section>{plot}{_gallery(page)}'
        f"<footer>{_e(page.footer)}</footer><script>{_JS}</script></body></html>\n"
    )


def write_html(page: ReportPage, out: Path) -> Path:
    """Write ``out/report.html`` atomically (a reader never sees half a page); returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILENAME
    atomic_write_text(path, render_html(page))
    return path

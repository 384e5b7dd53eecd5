"""report.html: one self-contained page per ``eval`` or ``bench`` run, to open offline.

The metric tables, the latency x accuracy plot (bench) and a gallery of every test image
with its score, threshold and decision, misses first. ``gallery`` and ``tables`` collect
rows from the typed results, ``html`` renders and writes the page, ``pages`` decides what
each command's page shows.
"""

from fractalad_edge.report.gallery import GalleryCard, gallery_cards, worst_first
from fractalad_edge.report.html import REPORT_FILENAME, ReportPage, render_html, write_html
from fractalad_edge.report.pages import write_bench_html, write_eval_html

__all__ = [
    "REPORT_FILENAME",
    "GalleryCard",
    "ReportPage",
    "gallery_cards",
    "render_html",
    "worst_first",
    "write_bench_html",
    "write_eval_html",
    "write_html",
]

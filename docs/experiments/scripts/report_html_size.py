"""What report.html costs on a real test set: seconds to write it after evaluation, and its size.

    python docs/experiments/scripts/report_html_size.py MODEL_DIR MVTEC_CATEGORY OUT_DIR

Evaluates once (not timed here), then times ``write_eval_html`` (thumbnails + page) and
prints the file size and the mean thumbnail size. Results: docs/experiments/report-html.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fractalad_edge.data.test_set import load_test_set
from fractalad_edge.evaluation import evaluate_predictor
from fractalad_edge.predictor import Predictor
from fractalad_edge.report import gallery_cards, write_eval_html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    with Predictor.load(args.model) as predictor:
        test_set = load_test_set(args.data, predictor.metadata.input.height)
        report, maps = evaluate_predictor(predictor, test_set, category=args.data.name)
        tic = time.perf_counter()
        path = write_eval_html(report, test_set, maps, predictor.metadata, args.out, model=str(args.model), data=str(args.data))
        seconds = time.perf_counter() - tic
        cards = gallery_cards(test_set, maps, predictor.metadata)
    thumbnails = sum(len(c.thumbnail) for c in cards) / len(cards)
    print(
        f"{len(cards)} images: report.html {path.stat().st_size / 1e6:.2f} MB written in {seconds:.2f} s; "
        f"mean thumbnail {thumbnails / 1e3:.1f} kB; {sum(c.miss for c in cards)} misses"
    )


if __name__ == "__main__":
    main()

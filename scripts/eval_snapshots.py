"""Score a run's snapshots (``train --snapshot-every N``) with the eval code.

AUROC and AUPRO are threshold-free, so the run's own metadata (thresholds fitted for its
final weights) does not bias them; only the weights change between rows.

    python scripts/eval_snapshots.py runs/bottle --data ../shared/data/mvtec_ad/bottle --steps 50,100,150
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", required=True, help="comma-separated snapshot steps")
    args = parser.parse_args()

    import torch

    torch.set_flush_denormal(True)
    from fractalad_edge.bench.accuracy import evaluate_predictor, load_test_set
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.train.checkpoint import load_model_weights
    from fractalad_edge.train.loop import SNAPSHOT_DIR

    predictor = Predictor.load(args.run)
    test_set = load_test_set(args.data, predictor.metadata.input.height)
    print("| steps | image AUROC | pixel AUROC | AUPRO |")
    print("|---|---|---|---|")
    for step in (int(s) for s in args.steps.split(",")):
        load_model_weights(predictor.backend.model, args.run / SNAPSHOT_DIR / f"step_{step:06d}.safetensors")
        report, _ = evaluate_predictor(predictor, test_set)
        print(f"| {step} | {100 * report.image_auroc:.2f} | {100 * report.pixel_auroc:.2f} | {100 * report.aupro:.2f} |", flush=True)


if __name__ == "__main__":
    main()

"""Score a run's snapshots (``train --snapshot-every N``) with the eval code.

AUROC and AUPRO are threshold-free, so the run's own metadata (thresholds fitted for its
final weights) does not bias them; only the weights change between rows.

    python scripts/eval_snapshots.py runs/bottle --data ../shared/data/mvtec_ad/bottle --steps 50,100,150

``--average`` adds one row for the element-wise mean of the listed snapshots' weights
(stochastic weight averaging over the snapshots; BatchNorm running statistics averaged too).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", required=True, help="comma-separated snapshot steps")
    parser.add_argument("--average", action="store_true", help="also score the mean of the listed snapshots' weights")
    args = parser.parse_args()

    import torch

    torch.set_flush_denormal(True)
    from fractalad_edge.data.test_set import load_test_set
    from fractalad_edge.evaluation import evaluate_predictor
    from fractalad_edge.predictor import Predictor
    from fractalad_edge.models.torch_format import load_model_weights
    from fractalad_edge.train.loop import SNAPSHOT_DIR

    predictor = Predictor.load(args.run)
    test_set = load_test_set(args.data, predictor.metadata.input.height)
    print("| steps | image AUROC | pixel AUROC | AUPRO |")
    print("|---|---|---|---|")
    steps = [int(s) for s in args.steps.split(",")]
    paths = [args.run / SNAPSHOT_DIR / f"step_{step:06d}.safetensors" for step in steps]
    for step, path in zip(steps, paths):
        load_model_weights(predictor.backend.model, path)
        report, _ = evaluate_predictor(predictor, test_set)
        print(f"| {step} | {100 * report.image_auroc:.2f} | {100 * report.pixel_auroc:.2f} | {100 * report.aupro:.2f} |", flush=True)
    if args.average:
        from safetensors.torch import load_file

        states = [load_file(path) for path in paths]
        mean = {
            key: sum(state[key] for state in states) / len(states) if value.is_floating_point() else states[-1][key]
            for key, value in states[0].items()
        }
        predictor.backend.model.load_state_dict(mean)
        report, _ = evaluate_predictor(predictor, test_set)
        label = "mean of " + ", ".join(map(str, steps))
        print(f"| {label} | {100 * report.image_auroc:.2f} | {100 * report.pixel_auroc:.2f} | {100 * report.aupro:.2f} |")


if __name__ == "__main__":
    main()

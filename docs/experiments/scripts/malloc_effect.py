"""What glibc malloc tuning (fractalad_edge.allocator.keep_freed_memory) changes, measured.

malloc settings are per process, so the two settings cannot be interleaved inside one
process: this script alternates fresh subprocesses instead (default, tuned, default, ...)
and reports the median of each. Each subprocess first times torch eager inference at batch
1 in a fresh process, as a predictor starts, then training steps (random data, the default
model, channels_last as training uses it). Order matters: after large tensors have been
freed, glibc's dynamic mmap threshold has already risen, which hides part of the effect.

    python docs/experiments/scripts/malloc_effect.py --batch 32 --steps 3 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

_CHILD = r"""
import json, resource, sys, time
tuned = sys.argv[1] == "tuned"
batch, steps, frames = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if tuned:
    from fractalad_edge.allocator import keep_freed_memory
    assert keep_freed_memory()
import torch
torch.set_flush_denormal(True)
torch.manual_seed(0)
from fractalad_edge.models.fractalad import ModelConfig, build_model
from fractalad_edge.train.losses import segmentation_loss
model = build_model(ModelConfig(), pretrained_teacher=True).to(memory_format=torch.channels_last)
result = {}
if frames:
    model.eval()  # model.train() below, for the training steps
    frame = torch.randn(1, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for i in range(frames + 5):
            t = time.perf_counter(); model(frame); times.append(time.perf_counter() - t)
    result["eager_ms"] = 1e3 * sorted(times[5:])[len(times[5:]) // 2]
if steps:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.randn(batch, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    y = torch.randn(batch, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    mask = (torch.rand(batch, 1, 256, 256) > 0.9).float()
    def step():
        logits, distill = model.training_step_outputs(x, y)
        loss = distill + segmentation_loss(logits, mask)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    result.update(step_s=(time.perf_counter() - t0) / steps, sys_s=(r1.ru_stime - r0.ru_stime) / steps)
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per subprocess (0: none)")
    parser.add_argument("--frames", type=int, default=40, help="timed batch-1 eager forwards per subprocess (0: none)")
    parser.add_argument("--pairs", type=int, default=3, help="default/tuned subprocess pairs, alternated")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"default": [], "tuned": []}
    for _ in range(args.pairs):
        for setting in runs:
            out = subprocess.run(
                [sys.executable, "-c", _CHILD, setting, str(args.batch), str(args.steps), str(args.frames)],
                check=True, capture_output=True, text=True,
            ).stdout
            runs[setting].append(json.loads(out.strip().splitlines()[-1]))
            print(setting, runs[setting][-1], flush=True)
    print(f"\n| malloc | train step, batch {args.batch} (s) | system time per step (s) | eager batch 1 (ms) |")
    print("|---|---|---|---|")
    for setting, results in runs.items():
        cells = []
        for key, fmt in (("step_s", "{:.2f}"), ("sys_s", "{:.2f}"), ("eager_ms", "{:.1f}")):
            values = [r[key] for r in results if key in r]
            cells.append(
                f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})" if values else "-"
            )
        print(f"| {setting} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Per-test CPU seconds (plugins/cpu_per_test.py) of old vs new runs: totals, the 10 largest increases, per file.

usage: compare_cpu.py OLD.cpu.json[,OLD2.cpu.json] NEW.cpu.json[,NEW2.cpu.json]
"""
import json
import statistics
import sys
from collections import defaultdict


def mean_of(paths: list[str]) -> dict[str, tuple[float, float]]:
    runs = [json.load(open(p)) for p in paths]
    ids = set.intersection(*(set(r) for r in runs))
    return {i: (statistics.mean(r[i][0] for r in runs), statistics.mean(r[i][1] for r in runs)) for i in ids}


old_paths, new_paths = sys.argv[1].split(","), sys.argv[2].split(",")
old, new = mean_of(old_paths), mean_of(new_paths)
ids = sorted(set(old) & set(new))
print(f"{len(ids)} tests in both; mean of {len(old_paths)} old and {len(new_paths)} new runs")
print(f"sum of per-test CPU: old {sum(old[i][0] for i in ids):.1f} s, new {sum(new[i][0] for i in ids):.1f} s; "
      f"wall: old {sum(old[i][1] for i in ids):.1f} s, new {sum(new[i][1] for i in ids):.1f} s")
diffs = sorted(((new[i][0] - old[i][0], i) for i in ids), reverse=True)
print("\n| test | old CPU s | new CPU s | new - old |\n|---|---|---|---|")
for d, i in diffs[:10]:
    print(f"| `{i}` | {old[i][0]:.2f} | {new[i][0]:.2f} | {d:+.2f} |")
print("\n| largest decreases | old CPU s | new CPU s | new - old |\n|---|---|---|---|")
for d, i in diffs[::-1][:5]:
    print(f"| `{i}` | {old[i][0]:.2f} | {new[i][0]:.2f} | {d:+.2f} |")
fo, fn = defaultdict(float), defaultdict(float)
for i in ids:
    f = i.split("::")[0]
    fo[f] += old[i][0]
    fn[f] += new[i][0]
print("\n| file | old CPU s | new CPU s | new - old |\n|---|---|---|---|")
for f in sorted(fo, key=lambda f: -(fn[f] - fo[f])):
    print(f"| {f} | {fo[f]:.1f} | {fn[f]:.1f} | {fn[f] - fo[f]:+.1f} |")

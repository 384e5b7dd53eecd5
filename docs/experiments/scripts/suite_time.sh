#!/bin/bash
# Like-for-like suite time, old vs new (docs/experiments/suite-time.md): the same test node ids
# (the intersection of both collections, in the old side's collection order), run in the order
# old, new, old, new, each under /usr/bin/time -v with per-test CPU from cpu_per_test.py.
#
#   bash docs/experiments/scripts/suite_time.sh OLD_REV NEW_REV WORKDIR [PYTHON]
#   python docs/experiments/scripts/compare_cpu.py WORKDIR/oldA.cpu.json,WORKDIR/oldB.cpu.json WORKDIR/newA.cpu.json,WORKDIR/newB.cpu.json
set -eu
old_rev=$1; new_rev=$2; work=$(realpath -m "$3"); python=${4:-$PWD/.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd); repo=$(git -C "$here" rev-parse --show-toplevel)
mkdir -p "$work/plugins"; cp "$here/cpu_per_test.py" "$work/plugins/"
for side in old new; do
  rev=$([ $side = old ] && echo "$old_rev" || echo "$new_rev")
  [ -d "$work/$side" ] || git -C "$repo" worktree add --detach "$work/$side" "$rev"
  (cd "$work/$side" && PYTHONPATH=$PWD "$python" -m pytest --collect-only -q -p no:cacheprovider | grep "::" > "$work/$side.ids")
done
grep -Fx -f "$work/new.ids" "$work/old.ids" > "$work/ids.txt"
echo "$(wc -l < "$work/ids.txt") tests in both (old $(wc -l < "$work/old.ids"), new $(wc -l < "$work/new.ids"))"
run() {  # LABEL SIDE
  mapfile -t ids < "$work/ids.txt"
  (cd "$work/$2" && PYTHONPATH=$PWD:$work/plugins CPU_PER_TEST_OUT=$work/$1.cpu.json /usr/bin/time -v -o "$work/$1.time" \
    nice -n 10 "$python" -m pytest -p no:cacheprovider -p cpu_per_test -q --durations=0 "${ids[@]}" > "$work/$1.log" 2>&1) || true
  echo "$1: $(grep -E 'User time|System time|Elapsed' "$work/$1.time" | awk -F': ' '{printf "%s ", $2}') (user, sys, wall); $(tail -1 "$work/$1.log")"
}
run oldA old; run newA new; run oldB old; run newB new

#!/usr/bin/env bash
# The GPU figures of docs/performance.md, in phases that each fit a 10-minute slot on a
# GPU machine booked in short slots (or run them all at once):
#
#   bash benchmarks/gpu_figures.sh tests|step|random|e2e|pipeline|sweep|all [DATA_ROOT]
#
# `tests` first: tests/tort_core/test_cuda.py, what only a GPU can check (skipped elsewhere).
# `random`: the compiled steps again with compile_random=fused (inductor draws dropout and
# stochastic-depth masks in its kernels), against `step`'s compiled rows (eager's masks, the default).
# `sweep` runs the demo sweep (8 seeds of the demo profile at its own length, on the
# embedded digits, one trial per GPU) through Ray Tune and says where its wall time goes.
#
# DATA_ROOT is an ImageFolder dataset (default .data/flowers17).
# Each phase writes bench-<phase>.json under $OUT (default results/bench) and prints its table.
# On a machine without a package index that lacks pydantic (or Ray, for `sweep`), the wheels in
# $WHEELS (default .devwheels/) are installed into .devsite/ first.
set -euo pipefail
cd "$(dirname "$0")/.."
phase=${1:-all}
case $phase in
  tests|step|random|e2e|pipeline|sweep|all) ;;
  *) echo "error: phase '$phase': use tests, step, random, e2e, pipeline, sweep or all" >&2; exit 2 ;;
esac
data=${2:-.data/flowers17}
out=${OUT:-results/bench}
wheels=${WHEELS:-.devwheels}
mkdir -p "$out"
needs="import pydantic"
[ "$phase" = sweep ] && needs="import pydantic, ray.tune"
if ! python3 -c "$needs" 2>/dev/null; then
  if ! ls "$wheels"/*.whl > /dev/null 2>&1; then
    echo "error: '$needs' fails and $wheels/ holds no wheels; see the header of $0" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --target .devsite "$wheels"/*.whl
  export PYTHONPATH=$PWD/.devsite${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$phase" != tests ] && [ "$phase" != sweep ] && [ ! -d "$data" ]; then
  echo "error: dataset root '$data' does not exist; pass an ImageFolder root as the second argument" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true
common=(--profile thesis --device cuda --dataset imagefolder --data-root "$data")
run() {  # one phase: its modes, then a JSON named after it
  echo "== $1 ($(date -u +%H:%M:%S))"
  python3 benchmarks/bench.py "${common[@]}" --mode "$2" "${@:3}" --json "$out/bench-$1.json"
}
case $phase in
  tests) python3 -m pytest -q -p no:cacheprovider tests/tort_core/test_cuda.py ;;
  step) run step step,syncs --compile both ;;
  random) run random step --compile yes --set compile_random=fused ;;
  e2e) run e2e e2e --compile both ;;
  pipeline) run pipeline pipeline,checkpoint --workers "0,4,8,$(nproc)" --images 512 ;;
  sweep)
    echo "== sweep ($(date -u +%H:%M:%S))"
    python3 benchmarks/bench.py --mode sweep --recipe tort --sweep-trial demo --device cuda \
      --json "$out/bench-sweep.json" ;;
  all) for p in tests step random e2e pipeline sweep; do bash "$0" "$p" "$data"; done ;;
esac

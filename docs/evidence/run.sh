#!/usr/bin/env bash
# The CPU study behind docs/evidence/README.md: Tort against the thesis's baseline as its code ran it
# (sota, fidelity=as_run) and against Steiner et al.'s recipe as published (augreg), 3 seeds each, on
# two small real photograph datasets, under the `small` profile; and the loss-subset ablation on
# one of them. Rerun from the repository root:
#
#     DATA=/path/to/data bash docs/evidence/run.sh
#
# DATA holds flowers17/ and cars49/ in ImageFolder layout (train/<class>/, test/<class>/); see
# docs/evidence/README.md for their public sources and how they were cut. Runs already in the store
# (RESULTS) are reused, so an interrupted study continues where it stopped.
# Each `tort compare` runs one dataset; the two runs of a baseline add to one comparison (the root
# is not part of its name), so the report tests both datasets together (Holm over the two).
set -euo pipefail
DATA=${DATA:?set DATA to the folder holding flowers17/ and cars49/}
RESULTS=${RESULTS:-results-evidence}
OUT=${OUT:-docs/evidence}
SEEDS=${SEEDS:-3}
for dataset in flowers17 cars49; do
    tort compare --profile small --data-root "$DATA/$dataset" --seeds "$SEEDS" --results "$RESULTS" \
        --baseline sota --baseline-set fidelity=as_run --method tort --max-concurrent 2 --no-progress \
        --out "$RESULTS/compare"
    tort compare --profile small --data-root "$DATA/$dataset" --seeds "$SEEDS" --results "$RESULTS" \
        --baseline augreg --method tort --max-concurrent 2 --no-progress --out "$RESULTS/compare"
done
# The thesis's loss-subset ablation on one dataset: every non-empty subset of distill, supervised,
# rotation, 3 seeds (all three losses is the comparisons' Tort trial, reused).
tort sweep docs/evidence/loss_subsets.yaml --set data.root="$DATA/flowers17" \
    --results "$RESULTS" --max-concurrent 2 --no-progress --resume
# The committed store is the portable export; the report is built from it, so it names no local path
# and tests/analysis/test_evidence.py can regenerate its tables.
tort export --results "$RESULTS" --out "$OUT/store" --portable
tort report --results "$OUT/store" --baseline sota --baseline augreg --out "$OUT/report"

#!/usr/bin/env bash
# Lifelong editing benchmark on the default model (SmolLM2-135M-Instruct), CounterFact edit split.
#
#   bench/run_lifelong.sh [EDITORS] [TURNS] [EDITS_PER_TURN] [extra factpatch eval args...]
#   bench/run_lifelong.sh ft 50 10                     # -> runs/eval-ft-50x10/
#   bench/run_lifelong.sh rledit,malmen,ft 400 20 --curve-every 50 --editor-config cfg.json
#
# Environment: DATA (dataset file), DATA_DIR (model cache), THREADS (torch CPU threads), OUT.
# Runs in the foreground; use `nohup ... &` for long runs. Results: results.json, results.md, PNGs.
set -euo pipefail

editors="${1:-ft}"
turns="${2:-50}"
per_turn="${3:-10}"
shift $(( $# < 3 ? $# : 3 ))

data="${DATA:-/work/shared/data/counterfact-edit.json}"
data_dir="${DATA_DIR:-/tmp/fpdata}"
out="${OUT:-runs/eval-${editors//,/-}-${turns}x${per_turn}}"
threads_args=()
if [[ -n "${THREADS:-}" ]]; then threads_args=(--threads "$THREADS"); fi

mkdir -p "$out"
exec factpatch eval --data "$data" --data-dir "$data_dir" --editors "$editors" \
    --turns "$turns" --edits-per-turn "$per_turn" --out "$out" --per-case "${threads_args[@]}" "$@"

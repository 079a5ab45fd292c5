#!/usr/bin/env bash
# Length-aware SFT (a) of SPEC Supervision on the demo world: shortest-correct-of-k
# self-distillation, with the stopwise CLI. The demo's SFT student samples k answers to train
# problems; per problem the shortest correct one becomes an SFT trace; a short SFT from the
# student on them; then the held-out evaluation beside the SFT student's. About 3 minutes on
# 2 cores after `stopwise demo` (which it reuses: its SFT student, world and held-out problems).
#
#   bash scripts/demo_shortest.sh [DEMO_DIR=runs/demo] [OUT=runs/shortest] [K=4] [N_PROBLEMS=400]
#
# Every step resumes or is skipped when its output exists. Results: OUT/report.
set -euo pipefail
DEMO=${1:-runs/demo}
OUT=${2:-runs/shortest}
K=${3:-4}
N=${4:-400}
mkdir -p "$OUT"
[ -f "$DEMO/sft/sft_run.json" ] || stopwise demo --out "$DEMO"
SAMPLING=(--temperature 0.6 --top-p 1 --max-new-tokens 512 --batch-size 100)

# k samples per train problem from the SFT student (resumable: samples.jsonl is appended).
stopwise eval --model "$DEMO/sft" --benchmark "$DEMO/world/train.jsonl" --limit "$N" --n-samples "$K" \
    "${SAMPLING[@]}" --out "$OUT/sampling"
[ -f "$OUT/shortest.jsonl" ] || stopwise data shortest-correct "$OUT/sampling" \
    --problems "$DEMO/world/train.jsonl" --out "$OUT/shortest.jsonl"
[ -f "$OUT/shortest-sft/sft_run.json" ] || stopwise sft --model "$DEMO/sft" --data "$OUT/shortest.jsonl" \
    --output_dir "$OUT/shortest-sft" --set learning_rate=1e-3 --set num_train_epochs=2
stopwise eval --model "$OUT/shortest-sft" --benchmark "$DEMO/world/test.jsonl" "${SAMPLING[@]}" \
    --out "$OUT/eval/shortest-sft"
stopwise report "$DEMO/eval/sft" "$OUT/eval/shortest-sft" --out "$OUT/report" > /dev/null
sed -n '/^| method/,/^$/p' "$OUT/report/report.md"
echo "report: $OUT/report/report.md"

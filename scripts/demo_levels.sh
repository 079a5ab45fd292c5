#!/usr/bin/env bash
# The demo's TLDR levels, separated: SFT student -> level-tagged second SFT stage -> TLDR with a
# KL anchor -> evaluation at each level, all with the stopwise CLI. About 11 minutes on 2 cores
# after `stopwise demo` (which it reuses: its SFT student, world and held-out problems).
#
#   bash scripts/demo_levels.sh [DEMO_DIR=runs/demo] [OUT=runs/levels]
#
# Every step resumes or is skipped when its output exists. Results: OUT/report (accuracy and
# mean tokens of the SFT student, the level-tagged SFT student and TLDR at each level, Pareto
# plot, histograms).
set -euo pipefail
DEMO=${1:-runs/demo}
OUT=${2:-runs/levels}
RECIPE="$(cd "$(dirname "$0")/.." && pwd)/recipes/tldr_demo_levels.yaml"
mkdir -p "$OUT"
[ -f "$DEMO/sft/sft_run.json" ] || stopwise demo --out "$DEMO"
EVAL=(--benchmark "$DEMO/world/test.jsonl" --temperature 0.6 --top-p 1 --max-new-tokens 768 --batch-size 100)

# (b) of SPEC Supervision: every SFT trace tagged with its length tercile among traces of the
# same number of steps; two more epochs from the SFT student (one left the student's medium and
# long levels 7% apart, two 12%).
[ -f "$OUT/tagged.jsonl" ] || stopwise data level-tagged "$DEMO/sft/traces.jsonl" --tokenizer "$DEMO/sft" \
    --group-by difficulty --out "$OUT/tagged.jsonl"
[ -f "$OUT/tagged-sft/sft_run.json" ] || stopwise sft --model "$DEMO/sft" --data "$OUT/tagged.jsonl" \
    --out "$OUT/tagged-sft" --set lr=1e-3 --set epochs=2
[ -f "$OUT/tldr/tldr_summary.json" ] || stopwise tldr --config "$RECIPE" \
    --model "$OUT/tagged-sft" --data "$DEMO/world/train.jsonl" --out "$OUT/tldr"

for level in short medium long; do
    stopwise eval --model "$OUT/tagged-sft" "${EVAL[@]}" --level $level --out "$OUT/eval/tagged-sft_$level"
    stopwise eval --model "$OUT/tldr" "${EVAL[@]}" --level $level --out "$OUT/eval/tldr_$level"
done
stopwise report "$DEMO/eval/sft" "$OUT"/eval/tagged-sft_* "$OUT"/eval/tldr_* --out "$OUT/report" > /dev/null
sed -n '/^| method/,/^$/p' "$OUT/report/report.md"
echo "report: $OUT/report/report.md"

#!/usr/bin/env bash
# The Spanish→English Bible recipe.
#
#   examples/bible/run.sh [--preset demo|full|tiny] [--workdir DIR] [--dry-run]
#
# demo: a deliberately small problem that runs on a 2-core laptop CPU (make demo).
# full: paper-like proportions (all verses, 8k subwords, 2x500 teacher); meant for a GPU.
# tiny: a few hundred verses and minute models; exercises every step in seconds (tests).
# Every step is skipped when its output exists, so rerunning resumes.
set -euo pipefail

preset=demo workdir="" dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
workdir=${workdir:-runs/$preset}
here="$(cd "$(dirname "$0")" && pwd)"
user_dir="$(cd "$here/../.." && pwd)/fairseq_seqkd"

case "$preset" in
  tiny)
    PREPARE=(--max-words 10 --train-size 600 --valid-size 40 --test-size 40 --vocab-size 250)
    TEACHER=(--arch luong_lstm_1x32 --max-epoch 3)
    BATCH=(--max-tokens 1500) ;;
  demo)
    PREPARE=(--max-words 16 --train-size 7000 --valid-size 250 --test-size 250 --vocab-size 2000)
    TEACHER=(--arch luong_lstm_2x256 --max-epoch 12)
    BATCH=(--max-tokens 2500) ;;
  full)
    PREPARE=(--vocab-size 8000)
    TEACHER=(--arch luong_lstm_2x500 --max-epoch 13)
    BATCH=(--max-tokens 8000) ;;
  *) echo "error: unknown preset '$preset' (demo, full or tiny)" >&2; exit 2 ;;
esac
# fairseq and hydra warn about their own deprecations on every start; keep the log readable.
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
data="$workdir/data"
DATA="$data/bin"
TRAIN_COMMON=(--user-dir "$user_dir" --task seqkd_translation --optimizer adam --lr 0.003 --clip-norm 5
              --dropout 0.3 "${BATCH[@]}" --no-epoch-checkpoints --log-format simple --log-interval 50
              --num-workers 0 --seed 1)

# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists; report the time it took.
step() {
  local name="$1" output="$2"; shift 2
  if [ "$dry" -eq 1 ]; then printf '[%s] %s\n' "$name" "$(printf '%q ' "$@")"; return; fi
  if [ -e "$output" ]; then echo "[$name] done already ($output)"; return; fi
  echo "[$name] running..."
  local start=$SECONDS
  "$@"
  echo "[$name] finished in $((SECONDS - start))s"
}

mkdir -p "$workdir"
step prepare "$data/prepare.json" "$here/prepare.sh" --out "$data" "${PREPARE[@]}"
step teacher "$workdir/teacher/checkpoint_best.pt" \
  fairseq-train "$DATA" "${TRAIN_COMMON[@]}" "${TEACHER[@]}" --save-dir "$workdir/teacher"
step eval-teacher "$workdir/eval/teacher.txt" bash -c "mkdir -p '$workdir/eval' && \
  fairseq-generate '$DATA' --user-dir '$user_dir' --task seqkd_translation --path '$workdir/teacher/checkpoint_best.pt' \
    --gen-subset test --beam 5 --batch-size 64 --post-process sentencepiece --scoring sacrebleu \
    > '$workdir/eval/teacher.txt.tmp' && mv '$workdir/eval/teacher.txt.tmp' '$workdir/eval/teacher.txt'"
[ "$dry" -eq 1 ] || tail -n 1 "$workdir/eval/teacher.txt"

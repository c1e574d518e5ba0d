#!/usr/bin/env bash
# The Spanish→English Bible recipe: every method of Kim & Rush (2016) on one corpus, then a report.
#
#   examples/bible/run.sh [--preset demo|full|tiny] [--workdir DIR] [--dry-run]
#                         [--src FILE --tgt FILE --src-lang xx --tgt-lang yy] [--gpus N]
#
# demo: a deliberately small problem for a 2-core laptop CPU (make demo; about 20 minutes).
# full: paper-like proportions (all verses, 8k subwords, 2x500 teacher, 2x100 students, K=35); for a GPU.
# tiny: a few hundred sentences and minute models; runs every step in a few minutes (tests).
# --src/--tgt: your own parallel text instead of the Bible (any preset). --gpus N: use N GPUs.
# Every step is skipped when its output exists, so rerunning resumes; --dry-run prints the commands.
set -euo pipefail

preset=demo workdir="" dry=0 src="" tgt="" src_lang=es tgt_lang=en GPUS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --src) src="$2"; shift 2 ;;
    --tgt) tgt="$2"; shift 2 ;;
    --src-lang) src_lang="$2"; shift 2 ;;
    --tgt-lang) tgt_lang="$2"; shift 2 ;;
    --gpus) GPUS="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
workdir=${workdir:-runs/$preset}
here="$(cd "$(dirname "$0")" && pwd)"
user_dir="$(cd "$here/../.." && pwd)/fairseq_seqkd"
DEVICE=(--cpu)
[ "$GPUS" -gt 0 ] && DEVICE=()

# Sizes. Students are trained for the same number of epochs whatever their data or criterion.
case "$preset" in
  tiny)
    PREPARE=(--max-words 10 --train-size 400 --valid-size 30 --test-size 30 --vocab-size 200)
    TEACHER=(--arch luong_lstm_1x32 --max-epoch 3 --lr 0.01)
    STUDENT=(--arch luong_lstm_1x32 --dropout 0.1 --max-epoch 2 --lr 0.01)
    FINETUNE=(--lr 0.001 --max-epoch 1); RETRAIN=(--lr 0.001 --max-epoch 1); INTER_K=4
    BATCH=(--max-tokens 1000); KD=(--kd-alpha 0.5 --kd-topk 8 --kd-cache); SPEED=(--speed-sentences 5) ;;
  demo)
    PREPARE=(--max-words 16 --train-size 7000 --valid-size 250 --test-size 250 --vocab-size 2000)
    TEACHER=(--arch luong_lstm_1x256 --max-epoch 8 --dropout 0.2 --lr 0.005)
    STUDENT=(--arch luong_lstm_1x192 --dropout 0.2 --max-epoch 7 --lr 0.005)
    FINETUNE=(--lr 0.001 --max-epoch 2); RETRAIN=(--lr 0.001 --max-epoch 1); INTER_K=6
    BATCH=(--max-tokens 3000); KD=(--kd-alpha 0.5 --kd-topk 64 --kd-cache); SPEED=(--speed-sentences 25) ;;
  full)
    PREPARE=(--vocab-size 8000)
    TEACHER=(--arch luong_lstm_2x500 --max-epoch 13 --lr 0.002)
    STUDENT=(--arch luong_lstm_2x100 --max-epoch 13 --lr 0.002)
    FINETUNE=(--lr 0.0005 --max-epoch 3); RETRAIN=(--lr 0.0005 --max-epoch 3); INTER_K=35
    BATCH=(--max-tokens 8000); KD=(--kd-alpha 0.5); SPEED=(--speed-sentences 300) ;;
  *) echo "error: unknown preset '$preset' (demo, full or tiny)" >&2; exit 2 ;;
esac

# fairseq and hydra warn about their own deprecations on every start; keep the log readable.
export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
data="$workdir/data" DATA="$workdir/data/bin" RAW="$workdir/data/raw"
TRAIN=(--user-dir "$user_dir" --task seqkd_translation --optimizer adam --clip-norm 5 "${BATCH[@]}"
       --no-epoch-checkpoints --log-format simple --log-interval 100 --num-workers 0 --seed 1)
[ "$GPUS" -gt 1 ] && TRAIN+=(--distributed-world-size "$GPUS")
DISTILL=(--max-tokens 6000 --max-len-a 1.2 --max-len-b 10 "${DEVICE[@]}")
SHARDS=$(( GPUS > 1 ? GPUS : 1 ))
EVAL=(--beam 5 --refs "$RAW/test.$tgt_lang" "${SPEED[@]}" "${DEVICE[@]}")
PRUNE_RATIOS="50 80 90"
TEACHER_NAME="Teacher ${TEACHER[1]#luong_lstm_}" STUDENT_NAME="Baseline ${STUDENT[1]#luong_lstm_}"
REPORT_TITLE="Bible es→en, preset $preset"
source "$here/../pipeline.sh"

[ "$dry" -eq 1 ] || { mkdir -p "$workdir"; echo "# $(date -u +%FT%TZ) preset $preset" >> "$timings"; }
total_start=$SECONDS
if [ -n "$src$tgt" ]; then
  step prepare "$data/prepare.json" "$here/prepare.sh" --out "$data" --src "$src" --tgt "$tgt" \
    --src-lang "$src_lang" --tgt-lang "$tgt_lang" "${PREPARE[@]}"
else
  step prepare "$data/prepare.json" "$here/prepare.sh" --out "$data" "${PREPARE[@]}"
  EVAL+=(--extra-refs "$RAW/test.ref1.$tgt_lang")  # the King James Version
fi
run_pipeline
[ "$dry" -eq 1 ] || echo "total $((SECONDS - total_start))s (this run; steps done earlier not counted)" | tee -a "$timings"

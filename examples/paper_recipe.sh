# The paper's setups (Kim & Rush 2016, §4) on a downloaded corpus; sourced by the IWSLT15 and WMT14 run.sh.
# The recipe sets: CORPUS (iwslt15|wmt14), SRC, TGT, VOCAB, TEACHER_ARCH, STUDENT_ARCH, NAME.
#
#   run.sh --corpus-dir DIR [--workdir DIR] [--gpus N] [--dry-run] [--preset paper|tiny] [--download]
#
# paper: the paper's hyperparameters: SGD lr 1.0 halved every epoch from epoch 9, 13 epochs, dropout 0.3,
#        gradient norm clipped at 5, batches of 64 sentences, Word-KD alpha 0.5, beam 5, Seq-Inter K=35 with
#        fine-tuning at lr 0.1, pruning with retraining at lr 0.2. Training sentences of at most 50 words.
# tiny:  the same flow with minute models and a few epochs (for a small stand-in corpus: tests, dry runs).
# --gpus N: fairseq-train on N GPUs (--distributed-world-size N) and N distillation shards, one per GPU.
set -euo pipefail

preset=paper workdir="" dry=0 corpus_dir="" GPUS=0 download=0
while [ $# -gt 0 ]; do
  case "$1" in
    --corpus-dir) corpus_dir="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --gpus) GPUS="$2"; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --preset) preset="$2"; shift 2 ;;
    --download) download=1; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$corpus_dir" ] || { echo "error: --corpus-dir DIR is required (see --help)" >&2; exit 2; }
workdir=${workdir:-runs/$NAME-$preset}
examples="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
user_dir="$(cd "$examples/.." && pwd)/fairseq_seqkd"
DEVICE=(--cpu)
[ "$GPUS" -gt 0 ] && DEVICE=()

case "$preset" in
  paper)
    SGD=(--optimizer sgd --lr 1.0 --lr-scheduler fixed --force-anneal 9 --lr-shrink 0.5 --batch-size 64)
    TEACHER=(--arch "$TEACHER_ARCH" "${SGD[@]}" --max-epoch 13 --dropout 0.3)
    STUDENT=(--arch "$STUDENT_ARCH" "${SGD[@]}" --max-epoch 13 --dropout 0.3)
    FINETUNE=(--optimizer sgd --lr 0.1 --lr-scheduler fixed --max-epoch 3)
    RETRAIN=(--optimizer sgd --lr 0.2 --lr-scheduler fixed --max-epoch 3)
    INTER_K=35 KD=(--kd-alpha 0.5) PREPARE=(--max-words 50 --vocab-size "$VOCAB")
    DISTILL=(--max-tokens 12000 --max-len-a 1.2 --max-len-b 10 "${DEVICE[@]}") SPEED=(--speed-sentences 500) PRUNE_RATIOS="50 80 90" ;;
  tiny)
    TEACHER=(--arch luong_lstm_1x32 --optimizer adam --lr 0.01 --max-epoch 2 --batch-size 16)
    STUDENT=(--arch luong_lstm_1x32 --optimizer adam --lr 0.01 --max-epoch 1 --batch-size 16)
    FINETUNE=(--optimizer sgd --lr 0.1 --max-epoch 1); RETRAIN=(--optimizer sgd --lr 0.2 --max-epoch 1)
    INTER_K=4 KD=(--kd-alpha 0.5 --kd-topk 8 --kd-cache) PREPARE=(--max-words 50 --vocab-size 150)
    DISTILL=(--max-tokens 2000 "${DEVICE[@]}") SPEED=(--speed-sentences 5) PRUNE_RATIOS="80" ;;
  *) echo "error: unknown preset '$preset' (paper or tiny)" >&2; exit 2 ;;
esac

export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
text="$workdir/text" data="$workdir/data" DATA="$workdir/data/bin" RAW="$workdir/data/raw" tgt_lang="$TGT"
TRAIN=(--user-dir "$user_dir" --task seqkd_translation --clip-norm 5 --no-epoch-checkpoints --log-format simple
       --log-interval 100 --seed 1 "${DEVICE[@]}")
[ "$GPUS" -gt 1 ] && TRAIN+=(--distributed-world-size "$GPUS")
SHARDS=$(( GPUS > 1 ? GPUS : 1 ))
EVAL=(--beam 5 --refs "$RAW/test.$TGT" "${SPEED[@]}" "${DEVICE[@]}")
TEACHER_NAME="Teacher ${TEACHER[1]#luong_lstm_}" STUDENT_NAME="Baseline ${STUDENT[1]#luong_lstm_}"
REPORT_TITLE="$NAME, preset $preset"
source "$examples/pipeline.sh"

[ "$dry" -eq 1 ] || { mkdir -p "$workdir"; echo "# $(date -u +%FT%TZ) preset $preset" >> "$timings"; }
if [ "$download" -eq 1 ]; then
  for url in "${DOWNLOADS[@]}"; do
    step "download $(basename "$url")" "$corpus_dir/.$(basename "$url").done" bash -c \
      'mkdir -p "$0" && curl -fL "$1" | tar -xz -C "$0" && touch "$0/.$(basename "$1").done"' "$corpus_dir" "$url"
  done
fi
step "extract text" "$text/test.$TGT" python3 -m fairseq_seqkd.corpora.paper "$CORPUS" --corpus-dir "$corpus_dir" \
  --src "$SRC" --tgt "$TGT" --out "$text"
step prepare "$data/prepare.json" seqkd-prepare --src-file "$text/train.$SRC" --tgt-file "$text/train.$TGT" \
  --valid-src "$text/valid.$SRC" --valid-tgt "$text/valid.$TGT" --test-src "$text/test.$SRC" \
  --test-tgt "$text/test.$TGT" --src-lang "$SRC" --tgt-lang "$TGT" --out "$data" "${PREPARE[@]}"
run_pipeline

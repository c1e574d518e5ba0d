# The paper's setups (Kim & Rush 2016, §4) on a downloaded corpus; sourced by the IWSLT15 and WMT14 run.sh.
# The recipe sets: CORPUS (iwslt15|wmt14), SRC, TGT, VOCAB, TEACHER_ARCH, STUDENT_ARCH, NAME, DOWNLOADS.
#
#   run.sh --corpus-dir DIR [--workdir DIR] [--gpus N] [--jobs N] [--dry-run] [--preset paper|tiny] [--download]
#          [--seed N | --seeds N N ...] [--eval-subset valid|test] [--engine E [--engine-quantize Q]] [--with-multi]
#          [--teacher-arch A] [--student-arch B] [--teacher-args "OPTIONS"] [--student-args "OPTIONS"]
#
# paper: the paper's hyperparameters: SGD lr 1.0 halved every epoch from epoch 9, 13 epochs, dropout 0.3,
#        gradient norm clipped at 5, batches of 64 sentences, Word-KD alpha 0.5, beam 5, Seq-Inter K=35 with
#        fine-tuning at lr 0.1, pruning with retraining at lr 0.2. Training sentences of at most 50 words.
# tiny:  the same flow with minute models and a few epochs (for a small stand-in corpus: tests, dry runs).
# --engine E: who decodes the teacher's beam search (default: examples/pipeline.sh; docs/engines.md).
# --with-multi: beyond the paper, the students "Seq-KD n-best (n=5)" and "Seq-KD MBR-5" (docs/multi_output.md):
#        one more beam search over the training set with K=8 (beam 8, its 8-best lists kept; 1.6 times the
#        beams of Seq-KD's K=5), 5 outputs per source by model score and by MBR (chrF) from the same lists, and
#        students with Seq-KD's schedule, 13 epochs of one pair per source each (--one-target-per-epoch).
# --teacher-arch/--student-arch: any fairseq architecture instead of the paper's LSTMs (e.g. transformer_wmt_en_de,
#        transformer_student_tiny); --teacher-args/--student-args "OPTIONS": more fairseq-train options for them,
#        split at white space (examples/pipeline.sh, docs/recipes.md). The paper's SGD schedule stays unless
#        OPTIONS replace it; WMT14's 2x300 student is left out with --student-arch.
# --gpus N: fairseq-train on N GPUs (--distributed-world-size N) and N distillation shards, one per GPU.
# Resumable: rerun the same command after a failure, a kill, Ctrl-C, SIGTERM or SIGHUP (which stop the running
# steps too); see examples/pipeline.sh, "Kills and reruns".
set -euo pipefail
examples="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$examples/pipeline.sh"

corpus_dir="" download=0
recipe_option() {
  case "$1" in
    --corpus-dir) corpus_dir="$2"; consumed=2 ;;
    --download) download=1; consumed=1 ;;
    *) return 1 ;;
  esac
}
preset=paper
recipe_options "$@"
[ -n "$corpus_dir" ] || { echo "error: --corpus-dir DIR is required (see --help)" >&2; exit 2; }
workdir=${workdir:-runs/$NAME-$preset}
user_dir="$(cd "$examples/.." && pwd)/fairseq_seqkd"

case "$preset" in
  paper)
    SGD=(--optimizer sgd --lr 1.0 --lr-scheduler fixed --force-anneal 9 --lr-shrink 0.5 --batch-size 64)
    TEACHER=("${SGD[@]}" --max-epoch 13 --dropout 0.3)
    STUDENT=("${SGD[@]}" --max-epoch 13 --dropout 0.3)
    FINETUNE=(--optimizer sgd --lr 0.1 --lr-scheduler fixed --max-epoch 3)
    RETRAIN=(--optimizer sgd --lr 0.2 --lr-scheduler fixed --max-epoch 3)
    INTER_K=35 KD=(--kd-alpha 0.5) PREPARE=(--max-words 50 --vocab-size "$VOCAB")
    DISTILL=(--max-tokens 12000 --max-len-a 1.2 --max-len-b 10) EVAL=(--speed-sentences 500) PRUNE_RATIOS="50 80 90" ;;
  tiny)
    TEACHER_ARCH=luong_lstm_1x32 STUDENT_ARCH=luong_lstm_1x32
    TEACHER=(--optimizer adam --lr 0.01 --max-epoch 2 --batch-size 16)
    STUDENT=(--optimizer adam --lr 0.01 --max-epoch 1 --batch-size 16)
    FINETUNE=(--optimizer sgd --lr 0.1 --max-epoch 1); RETRAIN=(--optimizer sgd --lr 0.2 --max-epoch 1)
    INTER_K=4 KD=(--kd-alpha 0.5) KD_STORE=8 PREPARE=(--max-words 50 --vocab-size 150)
    DISTILL=(--max-tokens 2000) EVAL=(--speed-sentences 5) PRUNE_RATIOS="80" ;;
  *) echo "error: unknown preset '$preset' (paper or tiny)" >&2; exit 2 ;;
esac

text="$workdir/text" data="$workdir/data" DATA="$workdir/data/bin" RAW="$workdir/data/raw" tgt_lang="$TGT"
REPORT_TITLE="$NAME, preset $preset"
recipe_setup
after=-
if [ "$download" -eq 1 ]; then
  for url in "${DOWNLOADS[@]}"; do
    step "download $(basename "$url")" "$corpus_dir/.$(basename "$url").done" "$after" bash -c \
      'set -o pipefail; mkdir -p "$0" && curl -fL "$1" | tar -xz -C "$0"' "$corpus_dir" "$url"
    after="download $(basename "$url")"
  done
fi
step "extract text" "$text/done" "$after" "$PYTHON" -m fairseq_seqkd.corpora.paper "$CORPUS" \
  --corpus-dir "$corpus_dir" --src "$SRC" --tgt "$TGT" --out "$text"
step prepare "$data/prepare.json" "extract text" seqkd-prepare --src-file "$text/train.$SRC" \
  --tgt-file "$text/train.$TGT" --valid-src "$text/valid.$SRC" --valid-tgt "$text/valid.$TGT" \
  --test-src "$text/test.$SRC" --test-tgt "$text/test.$TGT" --src-lang "$SRC" --tgt-lang "$TGT" --out "$data" \
  "${PREPARE[@]}"
run_pipeline
finish

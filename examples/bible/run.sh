#!/usr/bin/env bash
# The Spanish→English Bible recipe: every method of Kim & Rush (2016) on one corpus, then a report.
#
#   examples/bible/run.sh [--preset demo|full|tiny|transformer] [--workdir DIR] [--dry-run] [--gpus N] [--jobs N]
#                         [--seed N | --seeds N N ...] [--eval-subset valid|test] [--engine E [--engine-quantize Q]]
#                         [--src FILE --tgt FILE --src-lang xx --tgt-lang yy] [--title TEXT] [--with-multi]
#                         [--teacher-arch A] [--student-arch B] [--teacher-args "OPTIONS"] [--student-args "OPTIONS"]
#
# demo: a deliberately small problem for a 2-core laptop CPU (make demo; 2-core CPUs differ by 2x: its teacher took 427 s on one, 845 s on another).
# full: paper-like proportions (all verses, 8k subwords, 2x500 teacher, 2x100 students, K=35); for a GPU.
# tiny: a few hundred sentences and minute models; runs every step in a few minutes (tests).
# transformer: the demo's corpus with one joint vocabulary, a Transformer teacher (transformer_teacher_bible) and
#   deep-encoder/shallow-decoder Transformer students (transformer_student_bible); not yet tuned (see the preset).
# --teacher-arch/--student-arch: any fairseq architecture instead of the preset's; --teacher-args/--student-args
#   "OPTIONS": more fairseq-train options for it, split at white space (examples/pipeline.sh, docs/recipes.md).
# --seeds: the multi-seed study (examples/bible/study.sh): one run per seed in WORKDIR/seed-N on the same
#   corpus split, and a report over the seeds (mean ± sd, paired differences) in WORKDIR.
# --src/--tgt: your own parallel text instead of the Bible (any preset); --title names it in the reports.
# --jobs N: steps run at the same time (default 2). --gpus N: use N GPUs.
# --engine: who decodes the teacher's beam search over the training set (examples/pipeline.sh, docs/engines.md).
# --with-multi: also the students "Seq-KD n-best (n=5)" and "Seq-KD MBR-5", trained on 5 of the teacher's 8 best
#   outputs per source (one more beam search, K=8; examples/pipeline.sh, docs/multi_output.md).
# Every step is skipped when its output exists, so rerunning resumes; --dry-run prints the commands.
# Ctrl-C, SIGTERM or SIGHUP stop the running steps too (SIGKILL after 10 s); rerun the same command to resume
# (examples/pipeline.sh, "Kills and reruns"). One run at a time per WORKDIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../pipeline.sh"

src="" tgt="" src_lang=es tgt_lang=en title=""
recipe_option() {
  case "$1" in
    --src) src="$2" ;; --tgt) tgt="$2" ;; --src-lang) src_lang="$2" ;; --tgt-lang) tgt_lang="$2" ;;
    --title) title="$2" ;;
    *) return 1 ;;
  esac
  consumed=2
}
preset=demo
recipe_options "$@"
workdir=${workdir:-runs/$preset}
user_dir="$(cd "$here/../.." && pwd)/fairseq_seqkd"

# Sizes. Every student of a preset has the same architecture and schedule, whatever its data or criterion.
PRUNE_RATIOS="50 80 90"
case "$preset" in
  tiny)
    PREPARE=(--max-words 10 --train-size 400 --valid-size 30 --test-size 30 --vocab-size 200)
    TEACHER_ARCH=luong_lstm_1x32 TEACHER=(--optimizer adam --lr 0.01 --max-epoch 3 --max-tokens 1000)
    STUDENT_ARCH=luong_lstm_1x32 STUDENT=(--optimizer adam --dropout 0.1 --lr 0.01 --max-epoch 2 --max-tokens 1000)
    FINETUNE=(--lr 0.001 --max-epoch 1); RETRAIN=(--lr 0.001 --max-epoch 1); INTER_K=4
    KD=(--kd-alpha 0.5) KD_STORE=8; EVAL=(--speed-sentences 5)
    DISTILL=(--max-tokens 6000 --max-len-a 1.2 --max-len-b 10) ;;
  demo)
    # Chosen on the validation split (docs/demo_design.md): a 1x256 teacher (3.0M parameters) far
    # above 1x128 students (1.1M) in every seed; Word-KD from the teacher's top 64, stored once per corpus; small batches (many updates for a small model on one core);
    # training lengths in updates with the learning rate decayed linearly to 0 (same budget whatever the corpus).
    PREPARE=(--max-words 16 --train-size 7000 --valid-size 250 --test-size 250 --vocab-size 2000)
    TEACHER_ARCH=luong_lstm_1x256 TEACHER=(--optimizer adam --dropout 0.2 --lr 0.003 --max-tokens 500
      --lr-scheduler polynomial_decay --warmup-updates 50 --max-update 3300 --total-num-update 3300)
    STUDENT_ARCH=luong_lstm_1x128 STUDENT=(--optimizer adam --dropout 0.3 --lr 0.005 --max-tokens 500
      --lr-scheduler polynomial_decay --warmup-updates 50 --max-update 4000 --total-num-update 4000)
    FINETUNE=(--lr 0.001 --max-update 500 --total-num-update 500)
    RETRAIN=(--lr 0.002 --max-update 660 --total-num-update 660); INTER_K=6
    # Pruning at 50% only: a 1x128 student keeps 4.0 greedy BLEU at 80% and 0.0 at 90% (3 seeds), rows that cost
    # ~3 minutes of the budget and show only that it is too small to prune further. Speeds: 3 repeats, so that
    # the report prints a speed-up only where it exceeds the measured spread.
    KD=(--kd-alpha 0.5) KD_STORE=64; EVAL=(--speed-sentences 25 --speed-repeats 3)
    PRUNE_RATIOS="50"
    DISTILL=(--max-tokens 6000 --max-len-a 1.2 --max-len-b 10) ;;
  transformer)
    # The demo's corpus and budget shape with Transformers (docs/architectures.md): one joint vocabulary of 2k
    # subwords, every embedding shared; teacher transformer_teacher_bible (3+3 layers of 256, 4.5M parameters),
    # students transformer_student_bible (3 encoder layers and 1 decoder layer of 128, 1.1M: the size of the demo's
    # 1x128 LSTM students). The teacher's schedule is the one a 3+3x256 Transformer was trained with on the demo's
    # corpus before (BENCHMARKS.md: 1,800 updates, 28 minutes on one thread, validation perplexity 14.2, with the
    # demo's two 2k vocabularies); the students take it without label smoothing. None of these settings (the
    # vocabulary, the sizes, the students' schedule, FINETUNE, KD, INTER_K) has been chosen on the validation split
    # yet, as the demo's were (docs/demo_design.md): a first setting, to be measured (--eval-subset valid).
    # Pruning at 50%, as the demo: seqkd-prune ranks and masks the one shared embedding table once (under the
    # name the model holds it by) and the retraining holds it at zero in every place it is used
    # (fairseq_seqkd/pruning.py); 80% and 90% are left out for the demo's reason (a 1.1M student).
    PREPARE=(--max-words 16 --train-size 7000 --valid-size 250 --test-size 250 --vocab-size 2000 --joint-vocab)
    ADAM=(--share-all-embeddings --optimizer adam --adam-betas "(0.9,0.98)" --lr 0.001 --lr-scheduler inverse_sqrt
      --warmup-updates 300 --dropout 0.2 --max-tokens 2000 --clip-norm 1 --max-update 1800)
    TEACHER_ARCH=transformer_teacher_bible TEACHER=("${ADAM[@]}" --criterion label_smoothed_cross_entropy
      --label-smoothing 0.1)
    STUDENT_ARCH=transformer_student_bible STUDENT=("${ADAM[@]}")
    FINETUNE=(--lr 0.0003 --warmup-updates 50 --max-update 300)
    RETRAIN=(--lr 0.0003 --warmup-updates 50 --max-update 400); INTER_K=6
    KD=(--kd-alpha 0.5) KD_STORE=64; EVAL=(--speed-sentences 25 --speed-repeats 3)
    PRUNE_RATIOS="50"
    DISTILL=(--max-tokens 6000 --max-len-a 1.2 --max-len-b 10) ;;
  full)
    PREPARE=(--vocab-size 8000)
    TEACHER_ARCH=luong_lstm_2x500 TEACHER=(--optimizer adam --lr 0.002 --max-epoch 13 --max-tokens 8000)
    STUDENT_ARCH=luong_lstm_2x100 STUDENT=(--optimizer adam --lr 0.002 --max-epoch 13 --max-tokens 8000)
    FINETUNE=(--lr 0.0005 --max-epoch 3); RETRAIN=(--lr 0.0005 --max-epoch 3); INTER_K=35
    KD=(--kd-alpha 0.5); EVAL=(--speed-sentences 300)
    DISTILL=(--max-tokens 6000 --max-len-a 1.2 --max-len-b 10) ;;
  *) echo "error: unknown preset '$preset' (demo, full, tiny or transformer)" >&2; exit 2 ;;
esac

data="$workdir/data" DATA="$workdir/data/bin" RAW="$workdir/data/raw"
recipe_setup
if [ -n "$src$tgt" ]; then
  REPORT_TITLE="${title:-$(basename "$src") → $(basename "$tgt") ($src_lang→$tgt_lang)}, preset $preset"
  step prepare "$data/prepare.json" - "$here/prepare.sh" --out "$data" --src "$src" --tgt "$tgt" \
    --src-lang "$src_lang" --tgt-lang "$tgt_lang" "${PREPARE[@]}"
else
  [ "$src_lang$tgt_lang" = esen ] || [ "$src_lang$tgt_lang" = enes ] ||
    { echo "error: the Bible recipe reads Spanish and English (--src-lang es/en --tgt-lang en/es)" >&2; exit 2; }
  REPORT_TITLE="${title:-Bible $src_lang→$tgt_lang}, preset $preset"
  step prepare "$data/prepare.json" - "$here/prepare.sh" --out "$data" --src-lang "$src_lang" \
    --tgt-lang "$tgt_lang" "${PREPARE[@]}"
  [ "$tgt_lang" = en ] && EVAL+=(--extra-refs "$RAW/$EVAL_SUBSET.ref1.$tgt_lang")  # the King James Version
fi
run_pipeline
finish

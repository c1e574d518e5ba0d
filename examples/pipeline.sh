# The shared front of the recipes and the whole Kim & Rush (2016) pipeline; sourced by every run.sh.
#
# A recipe's run.sh sources this file, then:
#   recipe_options "$@"     the options every recipe takes (below); its own ones through a function
#                           `recipe_option` that sets `consumed` to the number of words it took
#   (its preset)            sets TEACHER_ARCH STUDENT_ARCH and the option arrays below
#   recipe_setup            DEVICE, TRAIN, DISTILL, EVAL from the options; starts the plan
#   step prepare ...        its own data steps (the pipeline's steps come after the one named "prepare")
#   run_pipeline            every method of the paper, once per seed (any extra steps of its own after it)
#   finish                  the reports, then runs the plan (or prints it with --dry-run)
#
# Options: --preset NAME --workdir DIR --dry-run --gpus N --jobs N --seed N | --seeds N N ... --eval-subset S
#          --kd-store K --engine E --engine-quantize Q --with-multi
#          --teacher-arch A --student-arch B --teacher-args "OPTIONS" --student-args "OPTIONS"
# (--teacher-arch A / --student-arch B: any registered fairseq architecture (fairseq's, e.g. transformer,
# transformer_iwslt_de_en, or ours, e.g. luong_lstm_2x500, transformer_student_bible: docs/architectures.md)
# instead of the preset's TEACHER_ARCH / STUDENT_ARCH, for the teacher / for every student; a name fairseq does not
# know is refused with one line before anything runs. --teacher-args / --student-args "OPTIONS": more fairseq-train
# options, appended to the preset's TEACHER / STUDENT (a later option wins: --teacher-args "--dropout 0.1"
# overrides the preset's dropout), e.g. the shape and schedule that architecture needs; the student's reach every
# student, fine-tuned and retrained ones included. OPTIONS is one argument, split at white space and nothing else
# (no quotes, no globbing, no $-expansion: a value cannot hold a space, and none of fairseq-train's needs one, e.g.
# --teacher-args "--adam-betas (0.9,0.98) --lr 0.0005"); give the option again to add more. The report's rows
# name the architectures: "Teacher 1x256" for luong_lstm_1x256, else "Teacher ARCH" with the name as given.)
# (--kd-store K: Word-KD students read the teacher's top K from a store on disk, built once per Word-KD corpus by
# seqkd-topk, in as many shards as the distillation; 0: the live teacher over the full vocabulary, as the paper.
# Default: the preset's KD_STORE)
# (--eval-subset valid: the evaluations and reports go to WORKDIR/valid, WORKDIR/seed-N/valid; the models are
# the same, so a second run with the test split only evaluates them)
# (--engine E [--engine-quantize Q]: who runs the teacher's beam search over the training set, as seqkd-distill
# --engine (docs/engines.md). Default: ctranslate2 float32 for a Transformer teacher when ctranslate2 is installed,
# seqkd float32 (our exact LSTM decoder) for an LSTM teacher on the CPU, else fairseq; --dry-run prints the choice.
# A quantised engine (int8) only when asked: its corpus is no longer the teacher's exact beam output.)
# (--jobs: steps run at the same time, default 2, or N with --gpus N so that N distillation shards run at once)
# (--with-multi: beyond the paper, two more students that learn from several teacher outputs per source
# (docs/multi_output.md), rows "Seq-KD n-best (n=5)" and "Seq-KD MBR-5": one more teacher beam search over the
# training set, K = MULTI_K (default 8) with its K-best lists kept (seqkd-distill --select top-n --keep 5
# --write-kbest: the n-best corpus), then from the same lists the MBR-5 corpus (seqkd-select --mode mbr --keep 5
# --mbr-utility MBR_UTILITY, default bleu: it did better than chrf on the Bible's validation split). Both students have Seq-KD's architecture and schedule and train with
# --one-target-per-epoch: each epoch one of a source's 5 pairs, drawn anew every epoch, so an epoch has the
# corpus's size and every student gets the same number of updates, whether the preset counts epochs or updates.
# K > 5, else MBR-5 would keep the same 5 hypotheses as the n-best (in another order). Off by default.)
#
# What a preset sets:
#   TEACHER_ARCH STUDENT_ARCH  architectures of the teacher and of every student (rows "Teacher 1x256", ...;
#                        --teacher-arch/--student-arch replace them)
#   TEACHER  STUDENT     other fairseq-train options of the teacher / of every student trained from scratch
#                        (--teacher-args/--student-args add to them)
#   FINETUNE             options of the Seq-Inter fine-tuning runs (the paper: SGD, lr 0.1)
#   RETRAIN              options of the retraining after pruning (the paper: lr 0.2)
#   KD                   word_kd options (the paper: --kd-alpha 0.5)
#   KD_STORE             k of the teacher's top-k store for Word-KD (0 or unset: the live full-vocabulary teacher)
#   INTER_K              K of the Seq-Inter K-best lists (the paper: 35)
#   MULTI_K MULTI_KEEP   --with-multi: K of the K-best lists (default 8) and outputs kept per source (default 5)
#   MBR_UTILITY          --with-multi: the MBR utility, bleu (default, chosen on the validation split) or chrf
#   DISTILL              seqkd-distill options (batching, length limits)
#   EVAL                 seqkd-eval options besides the references (e.g. --speed-sentences)
#   PRUNE_RATIOS         e.g. "50 80 90"
#
# Every step is skipped when its output exists (a file its command writes last and atomically, or a done marker
# written only after its command exited with status 0), so running a recipe again resumes it. Independent
# steps run at the same time (--jobs, default 2: on a 2-core CPU two one-thread trainings of small models take
# about as long as one with two threads). Each step prints one line when it ends; its full log is in
# WORKDIR/logs/ (WORKDIR/seed-N/logs/ with --seeds); a failing step shows the last lines of its log.
#
# Kills and reruns. The steps are run by `python -m fairseq_seqkd.workflow` (the recipe's process becomes it,
# same pid), each step in its own process group. SIGTERM (a scheduler's time limit, `kill`), SIGHUP (a dropped
# SSH session) and SIGINT (Ctrl-C) are forwarded to every running step's process group; whatever still runs
# 10 s later gets SIGKILL (a second signal: at once), and the recipe exits non-zero with "stopped by SIGTERM:
# rerun the same command to resume". Rerunning the same command then redoes only the unfinished steps:
# fairseq-train resumes from checkpoint_last.pt, seqkd-distill --resume from its journal; a step is marked
# done only after it exited with status 0 (exit status 3, a deliberate early stop such as seqkd-distill
# --stop-after-batches, is reported as STOPPED and not marked done). Killed with SIGKILL, the runner cannot
# stop its steps; a rerun then refuses (naming their process groups) until they have ended. One run at a time
# per WORKDIR: the plan is written to a temporary file that replaces WORKDIR/plan.tsv only once the runner
# holds WORKDIR/plan.tsv.lock, and a second recipe started on the same WORKDIR refuses with one line.
#
# Every model is used as it is at the end of its schedule (checkpoint_last.pt), as in the paper, which trains
# a fixed number of epochs. fairseq's checkpoint_best.pt is chosen by the loss on the gold validation targets,
# which misjudges Seq-KD students: trained on the teacher's output, they have a high gold perplexity by
# design (the paper's Table 1), and in the Bible demo their gold validation loss stays flat for epochs while
# their BLEU climbs from 0 to 9.
CKPT=checkpoint_last.pt
PYTHON=${PYTHON:-python3}

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

recipe_options() {
  preset=${preset:-} workdir="" dry=0 GPUS=0 JOBS="" SEEDS=(1) STUDY=0 EVAL_SUBSET=test KD_STORE_OPTION=""
  ENGINE="" ENGINE_QUANTIZE="" WITH_MULTI=0
  TEACHER_ARCH_OPTION="" STUDENT_ARCH_OPTION="" TEACHER_ARGS=() STUDENT_ARGS=()
  local words
  while [ $# -gt 0 ]; do
    case "$1" in
      --preset) preset="$2"; shift 2 ;;
      --workdir) workdir="$2"; shift 2 ;;
      --dry-run) dry=1; shift ;;
      --gpus) GPUS="$2"; shift 2 ;;
      --jobs) JOBS="$2"; shift 2 ;;
      --seed) SEEDS=("$2"); STUDY=0; shift 2 ;;
      --seeds) shift; SEEDS=(); STUDY=1
               while [ $# -gt 0 ] && [[ "$1" != --* ]]; do SEEDS+=("$1"); shift; done ;;
      --eval-subset) EVAL_SUBSET="$2"; shift 2 ;;
      --kd-store) KD_STORE_OPTION="$2"; shift 2 ;;
      --engine) ENGINE="$2"; shift 2 ;;
      --engine-quantize) ENGINE_QUANTIZE="$2"; shift 2 ;;
      --with-multi) WITH_MULTI=1; shift ;;
      --teacher-arch) TEACHER_ARCH_OPTION="$2"; shift 2 ;;
      --student-arch) STUDENT_ARCH_OPTION="$2"; shift 2 ;;
      --teacher-args) read -r -d '' -a words <<< "$2" || true; TEACHER_ARGS+=("${words[@]}"); shift 2 ;;
      --student-args) read -r -d '' -a words <<< "$2" || true; STUDENT_ARGS+=("${words[@]}"); shift 2 ;;
      -h|--help) usage; exit 0 ;;
      *) consumed=0
         if declare -F recipe_option >/dev/null && recipe_option "$@" && [ "$consumed" -gt 0 ]; then
           shift "$consumed"
         else
           echo "error: unknown option $1 (see --help)" >&2; exit 2
         fi ;;
    esac
  done
  local s
  [[ "$GPUS" =~ ^[0-9]+$ ]] && JOBS=${JOBS:-$(( GPUS > 2 ? GPUS : 2 ))}
  for s in "${SEEDS[@]}" "$GPUS" "$JOBS" ${KD_STORE_OPTION:+"$KD_STORE_OPTION"}; do
    [[ "$s" =~ ^[0-9]+$ ]] || { echo "error: '$s' is not a number (--seed/--seeds/--gpus/--jobs/--kd-store)" >&2; exit 2; }
  done
  [ "${#SEEDS[@]}" -gt 0 ] || { echo "error: --seeds needs at least one seed" >&2; exit 2; }
  [ "$JOBS" -gt 0 ] || { echo "error: --jobs must be at least 1" >&2; exit 2; }
  case "$EVAL_SUBSET" in valid|test) ;; *) echo "error: --eval-subset must be valid or test" >&2; exit 2 ;; esac
  case "$ENGINE" in ""|fairseq|ctranslate2|seqkd) ;; *)
    echo "error: --engine $ENGINE: choose one of fairseq, ctranslate2, seqkd" >&2; exit 2 ;; esac
  if [ "$ENGINE" = fairseq ] && [ -n "$ENGINE_QUANTIZE" ]; then
    echo "error: --engine-quantize $ENGINE_QUANTIZE: the fairseq engine takes none" >&2; exit 2
  fi
}

# The fairseq model of an architecture: fairseq's registry with our plugin loaded (USER_DIR, else the installed
# fairseq_seqkd), and the engine of seqkd-distill that decodes that model exactly (fairseq_seqkd.engines.FAMILIES:
# seqkd for lstm, the fast Transformer engine for transformer and its kin, fairseq for the rest). Arguments:
# USER_DIR, then pairs WHAT ARCH; prints "MODEL ENGINE" for each pair, or, for a name fairseq does not know or one of
# a model that translation cannot train (not an encoder-decoder: transformer_lm), one line "error: WHAT ARCH: ..."
# to stderr and exits with status 2.
ARCH_LOOKUP='
import sys
from argparse import Namespace
from difflib import get_close_matches
try:
    from fairseq import utils
except ImportError as e:
    sys.exit(f"error: {sys.executable} cannot look the architectures up ({e}): run the recipe where fairseq-seqkd "
             f"is installed (its virtual environment active, or PYTHON=/path/to/its/python)")
if sys.argv[1]:
    utils.import_user_module(Namespace(user_dir=sys.argv[1]))
else:
    import fairseq_seqkd  # noqa: F401
from fairseq.models import ARCH_MODEL_NAME_REGISTRY, ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel
from fairseq_seqkd.engines import FAMILIES
archs = [a for a, model in ARCH_MODEL_REGISTRY.items() if issubclass(model, FairseqEncoderDecoderModel)]
found = []
for what, arch in zip(sys.argv[2::2], sys.argv[3::2]):
    family = ARCH_MODEL_NAME_REGISTRY.get(arch)
    if arch not in archs:
        near = get_close_matches(arch, archs, 3, 0.7)
        hint = "did you mean " + " or ".join(near) + "?" if near else "see docs/architectures.md"
        why = f"a {family} model, not an encoder-decoder" if family else "not a registered fairseq architecture"
        print(f"error: {what} {arch}: {why} ({hint})", file=sys.stderr)
        sys.exit(2)
    found += [family, next((e for e, f in FAMILIES.items() if f and family in f), "fairseq")]
print(" ".join(found))
'

# arch_families: TEACHER_FAMILY/STUDENT_FAMILY, the fairseq models of TEACHER_ARCH/STUDENT_ARCH, and TEACHER_FAST,
# the engine that decodes the teacher exactly (ARCH_LOOKUP); an architecture fairseq does not know is refused with
# one line. A preset's own luong_lstm_* architectures (ours: the lstm model) are known without the lookup, which
# imports fairseq (seconds); any other architecture, and any given by --teacher-arch/--student-arch, is looked up.
arch_families() {
  local found pairs=()
  if [ -z "${TEACHER_ARCH_OPTION:-}${STUDENT_ARCH_OPTION:-}" ] && [[ "$TEACHER_ARCH" == luong_lstm_* ]] &&
     [[ "${STUDENT_ARCH:-luong_lstm_}" == luong_lstm_* ]]; then
    TEACHER_FAMILY=lstm STUDENT_FAMILY=lstm TEACHER_FAST=seqkd
    return
  fi
  pairs=(--teacher-arch "$TEACHER_ARCH")
  [ -n "${TEACHER_ARCH_OPTION:-}" ] || pairs[0]="TEACHER_ARCH of preset ${preset:-?}:"
  if [ -n "${STUDENT_ARCH:-}" ]; then  # (unset where only the engine is chosen: tests)
    pairs+=(--student-arch "$STUDENT_ARCH")
    [ -n "${STUDENT_ARCH_OPTION:-}" ] || pairs[2]="STUDENT_ARCH of preset ${preset:-?}:"
  fi
  found=$("$PYTHON" -c "$ARCH_LOOKUP" "${user_dir:-}" "${pairs[@]}") || exit 2
  read -r TEACHER_FAMILY TEACHER_FAST STUDENT_FAMILY _ <<< "$found"
}

# choose_engine: ENGINE (and ENGINE_WHY) for the teacher when --engine was not given: the fastest engine whose
# float32 output is the teacher's beam search output (docs/engines.md), by the teacher's fairseq model
# (arch_families), whatever its architecture is called
choose_engine() {
  ENGINE_WHY="--engine"
  [ -n "$ENGINE" ] && return
  [ -n "${TEACHER_FAST:-}" ] || arch_families
  case "$TEACHER_FAST" in
    seqkd)
      if [ "$GPUS" -eq 0 ]; then
        ENGINE=seqkd ENGINE_WHY="default for an LSTM teacher on the CPU"
      else
        ENGINE=fairseq ENGINE_WHY="default for an LSTM teacher on a GPU, where seqkd's speed is not measured yet"
      fi ;;
    ctranslate2)
      if "$PYTHON" -c "import ctranslate2" 2>/dev/null; then
        ENGINE=ctranslate2 ENGINE_WHY="default for a Transformer teacher"
      else
        ENGINE=fairseq ENGINE_WHY="ctranslate2 is not installed: pip install ctranslate2"
      fi ;;
    *) ENGINE=fairseq ENGINE_WHY="default for a $TEACHER_ARCH teacher ($TEACHER_FAMILY model)" ;;
  esac
}

recipe_setup() {
  # --teacher-arch/--student-arch/--teacher-args/--student-args over the preset's choices, checked before anything
  # runs (fairseq and hydra warn about their own deprecations on every start; keep the logs readable)
  export PYTHONWARNINGS=${PYTHONWARNINGS:-ignore}
  TEACHER_ARCH=${TEACHER_ARCH_OPTION:-$TEACHER_ARCH} STUDENT_ARCH=${STUDENT_ARCH_OPTION:-$STUDENT_ARCH}
  TEACHER+=("${TEACHER_ARGS[@]}") STUDENT+=("${STUDENT_ARGS[@]}") TEACHER_FAST=""
  arch_families
  DEVICE=(--cpu)
  [ "$GPUS" -gt 0 ] && DEVICE=()
  SHARDS=$(( GPUS > 1 ? GPUS : 1 ))
  TRAIN=(--user-dir "$user_dir" --task seqkd_translation --clip-norm 5 --no-epoch-checkpoints --log-format simple
         --log-interval 100 --num-workers 0 "${DEVICE[@]}")
  [ "$GPUS" -gt 1 ] && TRAIN+=(--distributed-world-size "$GPUS")
  choose_engine
  DISTILL+=("${DEVICE[@]}" --engine "$ENGINE" ${ENGINE_QUANTIZE:+--engine-quantize "$ENGINE_QUANTIZE"})
  KD_STORE=${KD_STORE_OPTION:-${KD_STORE:-0}}
  MULTI_K=${MULTI_K:-8} MULTI_KEEP=${MULTI_KEEP:-5} MBR_UTILITY=${MBR_UTILITY:-bleu}
  if [ "$WITH_MULTI" -eq 1 ]; then
    if ! [[ "$MULTI_K$MULTI_KEEP" =~ ^[0-9]+$ ]] || [ "$MULTI_KEEP" -lt 2 ] || [ "$MULTI_K" -le "$MULTI_KEEP" ]; then
      echo "error: --with-multi needs MULTI_K > MULTI_KEEP >= 2 (preset $preset: $MULTI_K, $MULTI_KEEP)" >&2; exit 2
    fi
    case "$MBR_UTILITY" in chrf|bleu) ;; *) echo "error: MBR_UTILITY $MBR_UTILITY: chrf or bleu" >&2; exit 2 ;; esac
  fi
  TOPK=(--k "$KD_STORE" --max-tokens 6000 "${DEVICE[@]}")
  EVAL+=(--beam 5 --subset "$EVAL_SUBSET" --refs "$RAW/$EVAL_SUBSET.$tgt_lang" "${DEVICE[@]}")
  # test-set results in RUN/eval and RUN/results.*; validation-set results beside them in RUN/valid/, so that
  # choosing settings on the validation split and reporting the test split share the trained models
  RESULTS=""
  [ "$EVAL_SUBSET" = test ] || RESULTS="/$EVAL_SUBSET"
  run="$workdir" STEP_PREFIX="" STEP_PREFIX_TITLE="" timings="$workdir/timings.txt" RUN_EVALS=() REPORTS=() RUNS=()
  # the plan is written to NEW_PLAN; the runner replaces PLAN by it once it holds PLAN's lock (finish), so a
  # recipe started while another one runs on the same WORKDIR never touches the running plan
  if [ "$dry" -eq 1 ]; then
    PLAN="" NEW_PLAN=""
    echo "# the teacher's beam search over the training set: --engine $ENGINE${ENGINE_QUANTIZE:+ --engine-quantize $ENGINE_QUANTIZE} ($ENGINE_WHY)"
  else
    mkdir -p "$workdir"
    PLAN="$workdir/plan.tsv" NEW_PLAN="$workdir/.plan.tsv.new-$$"
    : > "$NEW_PLAN"
    trap 'rm -f "$NEW_PLAN"' EXIT  # until finish hands it to the runner
  fi
}

# step NAME OUTPUT AFTER COMMAND...: a step of the plan. AFTER: the names of the steps it needs, comma-
# separated, within the same seed's run ("^NAME": a step shared by all seeds, such as ^prepare; "-": none).
# OUTPUT "-": a step that runs every time (the reports). Names hold no commas or tabs.
step() {
  local name="$1" output="$2" after="$3" deps=() d list joined
  shift 3
  IFS=, read -ra list <<< "$after"
  for d in "${list[@]}"; do
    case "$d" in -|"") ;; ^*) deps+=("${d#^}") ;; *) deps+=("$STEP_PREFIX$d") ;; esac
  done
  if [ "$dry" -eq 1 ]; then printf '[%s] %s\n' "$STEP_PREFIX$name" "$(printf '%q ' "$@")"; return; fi
  joined=$(IFS=,; echo "${deps[*]}")
  printf '%s\t%s\t%s\t%s\t0\t%s\n' "$STEP_PREFIX$name" "$output" "$run/logs/${name//[^A-Za-z0-9.+-]/-}.log" \
    "${joined:--}" "$(printf '%q ' "$@")" >> "$NEW_PLAN"
}

# train NAME DATA AFTER OPTIONS...: fairseq-train into models/NAME (an interrupted run resumes from checkpoint_last.pt)
train() {
  local name="$1" bin="$2" after="$3"; shift 3
  step "train $name" "$run/models/$name/done" "$after" \
    fairseq-train "$bin" "${TRAIN[@]}" --seed "$seed" --save-dir "$run/models/$name" "$@"
}

# distill NAME OUTPUT-DATA OPTIONS...: teacher beam search over the training set, in SHARDS shards, merged
distill() {
  local name="$1" out="$2"; shift 2
  local prefix="$run/distill/$name"
  if [ "$SHARDS" -le 1 ]; then
    step "$name data" "$out/done" "train teacher" seqkd-distill "$DATA" --path "$teacher" "${DISTILL[@]}" "$@" \
      --out-prefix "$prefix" --resume --binarize "$out"
    return
  fi
  local i shards=()
  for ((i = 0; i < SHARDS; i++)); do
    step "$name data (shard $((i + 1))/$SHARDS)" "$prefix.shard-$i-of-$SHARDS.done" "train teacher" \
      env "CUDA_VISIBLE_DEVICES=$((i % GPUS))" seqkd-distill "$DATA" --path "$teacher" "${DISTILL[@]}" "$@" \
      --out-prefix "$prefix" --num-shards "$SHARDS" --shard-id "$i" --resume
    shards+=("$name data (shard $((i + 1))/$SHARDS)")
  done
  step "$name data" "$out/done" "$(IFS=,; echo "${shards[*]}")" \
    seqkd-distill --merge --out-prefix "$prefix" --num-shards "$SHARDS" --binarize "$out"
}

# word_kd NAME DATA AFTER: the word_kd options of a student trained on DATA, in WORD_KD; with KD_STORE > 0 first
# the steps that build the teacher's top-KD_STORE store of DATA's training split (sharded like the distillation),
# and WORD_KD_AFTER: what the student's training must wait for (AFTER, or the store's step)
word_kd() {
  local name="$1" data="$2" after="$3"
  WORD_KD=(--criterion word_kd "${KD[@]}") WORD_KD_AFTER="$after"
  if [ "$KD_STORE" -le 0 ]; then
    WORD_KD+=(--teacher-path "$teacher")
    return
  fi
  local store="$run/topk/$name" i shards=()
  if [ "$SHARDS" -le 1 ]; then
    step "top-$KD_STORE $name" "$store/header.json" "$after,train teacher" seqkd-topk "$data" --path "$teacher" \
      "${TOPK[@]}" --out "$store" --resume
  else
    for ((i = 0; i < SHARDS; i++)); do
      step "top-$KD_STORE $name (shard $((i + 1))/$SHARDS)" "$store.shard-$i-of-$SHARDS.done" "$after,train teacher" \
        env "CUDA_VISIBLE_DEVICES=$((i % GPUS))" seqkd-topk "$data" --path "$teacher" "${TOPK[@]}" --out "$store" \
        --num-shards "$SHARDS" --shard-id "$i" --resume
      shards+=("top-$KD_STORE $name (shard $((i + 1))/$SHARDS)")
    done
    step "top-$KD_STORE $name" "$store/header.json" "$(IFS=,; echo "${shards[*]}")" \
      seqkd-topk --merge --out "$store" --num-shards "$SHARDS"
  fi
  WORD_KD+=(--kd-topk-store "$store") WORD_KD_AFTER="top-$KD_STORE $name"
}

# evaluate FILE MODEL "ROW NAME": seqkd-eval on the test set (--eval-subset) into eval/FILE.json
evaluate() {
  RUN_EVALS+=("eval $2")
  step "eval $2" "$run$RESULTS/eval/$1.json" "train $2" seqkd-eval "$DATA" --path "$run/models/$2/$CKPT" \
    --json "$run$RESULTS/eval/$1.json" --name "$3" "${EVAL[@]}"
}

# run_pipeline: every method of the paper for each seed (--seed/--seeds), in the order that keeps a 2-core
# machine busy: the teacher beside the baseline, then the distilled corpora, then students side by side.
run_pipeline() {
  # the rows the reports compare the students with (seqkd-report matches them by their exact names): "1x256" for
  # luong_lstm_1x256, any other architecture by its name ("Teacher transformer_teacher_bible")
  t_name="Teacher ${TEACHER_ARCH#luong_lstm_}" s_name="Baseline ${STUDENT_ARCH#luong_lstm_}"
  for seed in "${SEEDS[@]}"; do
    if [ "$STUDY" -eq 1 ]; then
      run="$workdir/seed-$seed" STEP_PREFIX="seed $seed: " STEP_PREFIX_TITLE=", seed $seed"
    fi
    teacher="$run/models/teacher/$CKPT"
    local student=(--arch "$STUDENT_ARCH" "${STUDENT[@]}") ratio
    # teacher and baseline student (gold data, cross-entropy)
    train teacher "$DATA" ^prepare --arch "$TEACHER_ARCH" "${TEACHER[@]}"
    train baseline "$DATA" ^prepare "${student[@]}"
    evaluate 02-baseline baseline "$s_name"
    # Seq-KD (§3.2): the teacher's beam search (K=5) over the training set is the student's data
    distill train.seqkd "$run/data-seqkd" --beam 5
    # the combination Seq-KD + Word-KD: the longest chain of the pipeline, so it starts first
    word_kd seqkd "$run/data-seqkd" "train.seqkd data"
    train seq-kd+word-kd "$run/data-seqkd" "$WORD_KD_AFTER" "${student[@]}" "${WORD_KD[@]}"
    # Seq-Inter (§3.3): from the teacher's K-best lists, the hypothesis with the best sentence BLEU
    distill train.inter "$run/data-inter" --beam "$INTER_K" --nbest "$INTER_K" --select seq-inter
    train seq-kd "$run/data-seqkd" "train.seqkd data" "${student[@]}"
    if [ "$WITH_MULTI" -eq 1 ]; then
      # --with-multi (docs/multi_output.md): one decoding, K-best lists kept; the n-best corpus from it, then the
      # MBR corpus from the same lists; each student sees one of a source's pairs per epoch
      distill train.nbest "$run/data-nbest" --beam "$MULTI_K" --nbest "$MULTI_K" --select top-n \
        --keep "$MULTI_KEEP" --write-kbest
      step "train.mbr data" "$run/data-mbr/done" "train.nbest data" seqkd-select "$run/distill/train.nbest.kbest" \
        --mode mbr --keep "$MULTI_KEEP" --mbr-utility "$MBR_UTILITY" --out-src "$run/distill/train.mbr.src" \
        --out-tgt "$run/distill/train.mbr.tgt" --out-ids "$run/distill/train.mbr.ids" --binarize "$run/data-mbr" \
        --data "$DATA"
      train seq-kd-nbest "$run/data-nbest" "train.nbest data" "${student[@]}" --one-target-per-epoch
      train seq-kd-mbr "$run/data-mbr" "train.mbr data" "${student[@]}" --one-target-per-epoch
    fi
    # Word-KD (§3.1): gold data, word-level distillation from the teacher
    word_kd gold "$DATA" "train teacher"
    train word-kd "$DATA" "$WORD_KD_AFTER" "${student[@]}" "${WORD_KD[@]}"
    train baseline+seq-inter "$run/data-inter" "train baseline,train.inter data" "${student[@]}" "${FINETUNE[@]}" \
      --finetune-from-model "$run/models/baseline/$CKPT"
    word_kd inter "$run/data-inter" "train.inter data"
    train seq-kd+seq-inter+word-kd "$run/data-inter" "train seq-kd+word-kd,$WORD_KD_AFTER" "${student[@]}" \
      "${FINETUNE[@]}" --finetune-from-model "$run/models/seq-kd+word-kd/$CKPT" "${WORD_KD[@]}"
    # pruning (§6) of the best combination, retrained on the Seq-KD data with the mask held fixed
    for ratio in $PRUNE_RATIOS; do
      step "prune $ratio%" "$run/models/pruned-$ratio/pruned.pt" "train seq-kd+seq-inter+word-kd" \
        seqkd-prune "$run/models/seq-kd+seq-inter+word-kd/$CKPT" "$run/models/pruned-$ratio/pruned.pt" \
        --ratio "0.$ratio"
      train "pruned-$ratio" "$run/data-seqkd" "prune $ratio%" "${student[@]}" "${RETRAIN[@]}" \
        --finetune-from-model "$run/models/pruned-$ratio/pruned.pt"
    done
    # every model on the test set (--eval-subset); a recipe's own models (recipe_models), then the report
    evaluate 01-teacher teacher "$t_name"
    evaluate 03-word-kd word-kd "Word-KD"
    evaluate 04-seq-kd seq-kd "Seq-KD"
    if [ "$WITH_MULTI" -eq 1 ]; then  # beside Seq-KD in the reports (they list the rows by file name)
      evaluate 04a-seq-kd-nbest seq-kd-nbest "Seq-KD n-best (n=$MULTI_KEEP)"
      evaluate 04b-seq-kd-mbr seq-kd-mbr "Seq-KD MBR-$MULTI_KEEP"
    fi
    evaluate 05-baseline+seq-inter baseline+seq-inter "Baseline + Seq-Inter"
    evaluate 06-seq-kd+word-kd seq-kd+word-kd "Seq-KD + Word-KD"
    evaluate 07-seq-kd+seq-inter+word-kd seq-kd+seq-inter+word-kd "Seq-KD + Seq-Inter + Word-KD"
    for ratio in $PRUNE_RATIOS; do
      evaluate "08-pruned-$ratio" "pruned-$ratio" "Seq-KD + Seq-Inter + Word-KD, pruned $ratio%"
    done
    if declare -F recipe_models >/dev/null; then recipe_models; fi
    step report - "$(IFS=,; echo "${RUN_EVALS[*]}")" seqkd-report "$run$RESULTS" \
      --teacher "$t_name" --baseline "$s_name" --title "$REPORT_TITLE$STEP_PREFIX_TITLE"
    RUN_EVALS=() REPORTS+=("${STEP_PREFIX}report") RUNS+=("$run$RESULTS")
  done
}

# finish: with --seeds, the report over all seeds; then run the plan (--dry-run: print it). The recipe's
# process becomes the runner (exec), so a signal sent to the recipe reaches the runner, which forwards it.
finish() {
  if [ "$STUDY" -eq 1 ]; then
    run="$workdir" STEP_PREFIX=""
    step "report over ${#SEEDS[@]} seeds" - "$(IFS=,; echo "${REPORTS[*]/#/^}")" \
      seqkd-report "$workdir$RESULTS" --teacher "$t_name" --baseline "$s_name" --title \
      "$REPORT_TITLE, seeds ${SEEDS[*]}" --runs "${RUNS[@]}"
  fi
  [ "$dry" -eq 1 ] && return
  echo "# $(date -u +%FT%TZ) $(basename "$(dirname "$0")") preset $preset, seeds ${SEEDS[*]}" >> "$timings"
  trap - EXIT  # the runner takes NEW_PLAN over (and removes it if it refuses)
  exec "$PYTHON" -m fairseq_seqkd.workflow "$PLAN" --new-plan "$NEW_PLAN" --jobs "$JOBS" --timings "$timings" \
    --unit-step "$([ "$STUDY" -eq 1 ] && printf 'seed %s: ' "${SEEDS[0]}")train teacher"  # the cost's unit
}

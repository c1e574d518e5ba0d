# The whole Kim & Rush (2016) pipeline on one prepared corpus; sourced by the recipes' run.sh.
#
# A recipe sets these, then calls `run_pipeline`:
#   workdir  DATA (fairseq binary data)  RAW (its raw text: test.TGT, test.ref1.TGT)  tgt_lang  dry (0/1)
#   TRAIN    options of every fairseq-train run (user dir, task, batching, logging)
#   TEACHER  STUDENT     architecture, schedule and optimizer of the teacher / of every student trained from scratch
#   FINETUNE             options of the Seq-Inter fine-tuning runs (the paper: SGD, lr 0.1)
#   RETRAIN              options of the retraining after pruning (the paper: lr 0.2)
#   KD                   word_kd options (the paper: --kd-alpha 0.5)
#   INTER_K              K of the Seq-Inter K-best lists (the paper: 35)
#   DISTILL              seqkd-distill options (batching, --cpu)
#   SHARDS               distillation shards run at once (one per GPU when GPUS > 0)
#   GPUS                 GPUs of this machine to spread the shards over (0: none)
#   EVAL                 seqkd-eval options (references, speed sentences, --cpu)
#   PRUNE_RATIOS         e.g. "50 80 90"
# Every step is skipped when its output exists, so running the recipe again resumes.
#
# Every model is used as it is at the end of its schedule (checkpoint_last.pt), as in the paper, which trains
# a fixed number of epochs. fairseq's checkpoint_best.pt is chosen by the loss on the gold validation targets,
# which misjudges Seq-KD students: trained on the teacher's output, they have a high gold perplexity by
# design (the paper's Table 1), and in the Bible demo their gold validation loss stays flat for epochs while
# their BLEU climbs from 0 to 9.
CKPT=checkpoint_last.pt

timings="$workdir/timings.txt"

# step NAME OUTPUT COMMAND...: run COMMAND unless OUTPUT exists; say how long it took.
step() {
  local name="$1" output="$2"; shift 2
  if [ "$dry" -eq 1 ]; then printf '[%s] %s\n' "$name" "$(printf '%q ' "$@")"; return; fi
  if [ -e "$output" ]; then echo "[$name] done already ($output)"; return; fi
  echo "[$name] running..."
  local start=$SECONDS
  "$@"
  echo "[$name] finished in $((SECONDS - start))s"
  echo "$name $((SECONDS - start))" >> "$timings"
}

# train NAME DATA OPTIONS...: fairseq-train into models/NAME (an interrupted run resumes from checkpoint_last.pt)
train() {
  local name="$1" bin="$2"; shift 2
  step "train $name" "$workdir/models/$name/done" bash -c '"$@" && touch "$0/done"' "$workdir/models/$name" \
    fairseq-train "$bin" "${TRAIN[@]}" --save-dir "$workdir/models/$name" "$@"
}

# distill NAME OUTPUT-DATA OPTIONS...: teacher beam search over the training set, in SHARDS shards, merged
distill() {
  local name="$1" out="$2"; shift 2
  local prefix="$workdir/distill/$name"
  if [ "${SHARDS:-1}" -le 1 ]; then
    step "$name data" "$out/done" bash -c '"$@" && touch "$0/done"' "$out" \
      seqkd-distill "$DATA" --path "$teacher" "${DISTILL[@]}" "$@" --out-prefix "$prefix" --binarize "$out"
    return
  fi
  local i pids=() threads=$(( $(nproc) / SHARDS > 0 ? $(nproc) / SHARDS : 1 ))
  for ((i = 0; i < SHARDS; i++)); do
    local device=(env "OMP_NUM_THREADS=$threads")
    [ "${GPUS:-0}" -gt 0 ] && device+=("CUDA_VISIBLE_DEVICES=$((i % GPUS))")
    local shard=(step "$name data, shard $i of $SHARDS" "$prefix.shard-$i-of-$SHARDS.done" bash -c
      '"$@" && touch "$0"' "$prefix.shard-$i-of-$SHARDS.done" "${device[@]}" seqkd-distill "$DATA" --path "$teacher"
      "${DISTILL[@]}" "$@" --out-prefix "$prefix" --num-shards "$SHARDS" --shard-id "$i" --resume)
    if [ "$dry" -eq 1 ]; then "${shard[@]}"; else "${shard[@]}" & pids+=($!); fi
  done
  for i in "${pids[@]}"; do wait "$i" || { echo "error: a $name shard failed" >&2; return 1; }; done
  step "$name data, merge" "$out/done" bash -c '"$@" && touch "$0/done"' "$out" \
    seqkd-distill --merge --out-prefix "$prefix" --num-shards "$SHARDS" --binarize "$out"
}

# evaluate FILE MODEL "ROW NAME": seqkd-eval on the test set into eval/FILE.json
evaluate() {
  step "eval $2" "$workdir/eval/$1.json" seqkd-eval "$DATA" --path "$workdir/models/$2/$CKPT" \
    --json "$workdir/eval/$1.json" --name "$3" "${EVAL[@]}"
}

run_pipeline() {
  teacher="$workdir/models/teacher/$CKPT"
  local t_name="${TEACHER_NAME:-Teacher}" s_name="${STUDENT_NAME:-Baseline}"
  # teacher and baseline student (gold data, cross-entropy)
  train teacher "$DATA" "${TEACHER[@]}"
  train baseline "$DATA" "${STUDENT[@]}"
  # Word-KD (§3.1): gold data, word-level distillation from the teacher
  train word-kd "$DATA" "${STUDENT[@]}" --criterion word_kd --teacher-path "$teacher" "${KD[@]}"
  # Seq-KD (§3.2): the teacher's beam search (K=5) over the training set is the student's data
  distill train.seqkd "$workdir/data-seqkd" --beam 5
  train seq-kd "$workdir/data-seqkd" "${STUDENT[@]}"
  # Seq-Inter (§3.3): from the teacher's K-best lists, the hypothesis with the best sentence BLEU
  distill train.inter "$workdir/data-inter" --beam "$INTER_K" --nbest "$INTER_K" --select seq-inter
  train baseline+seq-inter "$workdir/data-inter" "${STUDENT[@]}" "${FINETUNE[@]}" \
    --finetune-from-model "$workdir/models/baseline/$CKPT"
  # the combinations are compositions of the steps above
  train seq-kd+word-kd "$workdir/data-seqkd" "${STUDENT[@]}" --criterion word_kd --teacher-path "$teacher" "${KD[@]}"
  train seq-kd+seq-inter+word-kd "$workdir/data-inter" "${STUDENT[@]}" "${FINETUNE[@]}" \
    --finetune-from-model "$workdir/models/seq-kd+word-kd/$CKPT" --criterion word_kd \
    --teacher-path "$teacher" "${KD[@]}"
  # pruning (§6) of the best combination, retrained on the Seq-KD data with the mask held fixed
  local best="$workdir/models/seq-kd+seq-inter+word-kd/$CKPT" ratio
  for ratio in $PRUNE_RATIOS; do
    [ "$dry" -eq 1 ] || mkdir -p "$workdir/models/pruned-$ratio"
    step "prune $ratio%" "$workdir/models/pruned-$ratio/pruned.pt" seqkd-prune "$best" \
      "$workdir/models/pruned-$ratio/pruned.pt" --ratio "0.$ratio"
    train "pruned-$ratio" "$workdir/data-seqkd" "${STUDENT[@]}" "${RETRAIN[@]}" \
      --finetune-from-model "$workdir/models/pruned-$ratio/pruned.pt"
  done
  # every model on the test set, and the report
  evaluate 01-teacher teacher "$t_name"
  evaluate 02-baseline baseline "$s_name"
  evaluate 03-word-kd word-kd "Word-KD"
  evaluate 04-seq-kd seq-kd "Seq-KD"
  evaluate 05-baseline+seq-inter baseline+seq-inter "Baseline + Seq-Inter"
  evaluate 06-seq-kd+word-kd seq-kd+word-kd "Seq-KD + Word-KD"
  evaluate 07-seq-kd+seq-inter+word-kd seq-kd+seq-inter+word-kd "Seq-KD + Seq-Inter + Word-KD"
  for ratio in $PRUNE_RATIOS; do
    evaluate "08-pruned-$ratio" "pruned-$ratio" "Seq-KD + Seq-Inter + Word-KD, pruned $ratio%"
  done
  step report "$workdir/.report-always" seqkd-report "$workdir" --title "${REPORT_TITLE:-}"
}

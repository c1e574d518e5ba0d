#!/usr/bin/env bash
# WMT14 English→German, the paper's high-resource setup: teacher 4x1000, students 2x500 (and 2x300), 50k
# subwords per side; newstest2012+2013 for validation, newstest2014 for test.
#
#   examples/wmt14_en_de/run.sh --corpus-dir wmt14 [--download] [--workdir DIR] [--gpus N] [--dry-run]
#
# --corpus-dir: europarl-v7, commoncrawl and news-commentary-v9 (*.de-en.{de,en}, also under training/),
# dev/newstest201{2,3}.{en,de} and test-full/newstest2014-deen-{src,ref}.*.sgm; --download fetches and
# unpacks them from statmt.org. See examples/paper_recipe.sh for the rest.
CORPUS=wmt14 SRC=en TGT=de VOCAB=50000 NAME=wmt14_en_de
TEACHER_ARCH=luong_lstm_4x1000 STUDENT_ARCH=luong_lstm_2x500
DOWNLOADS=(http://www.statmt.org/wmt13/training-parallel-europarl-v7.tgz
           http://www.statmt.org/wmt13/training-parallel-commoncrawl.tgz
           http://www.statmt.org/wmt14/training-parallel-nc-v9.tgz
           http://www.statmt.org/wmt14/dev.tgz
           http://www.statmt.org/wmt14/test-full.tgz)
# The paper's smaller student: 2x300 with Seq-KD + Word-KD, fine-tuned on the Seq-Inter data (run by
# run_pipeline for every seed, before the report); with the students' options (--student-args too), and left out
# with --student-arch (another architecture than the paper's LSTMs: its options would not fit a 2x300 LSTM).
recipe_models() {
  [ -z "$STUDENT_ARCH_OPTION" ] || return 0
  local small=(--arch luong_lstm_2x300 "${STUDENT[@]}")
  [ "$preset" = paper ] || small=(--arch "$STUDENT_ARCH" "${STUDENT[@]}")
  train 2x300-seq-kd+word-kd "$run/data-seqkd" "train.seqkd data" "${small[@]}" --criterion word_kd \
    --teacher-path "$teacher" "${KD[@]}"
  train 2x300-seq-kd+seq-inter+word-kd "$run/data-inter" "train 2x300-seq-kd+word-kd,train.inter data" "${small[@]}" \
    "${FINETUNE[@]}" --finetune-from-model "$run/models/2x300-seq-kd+word-kd/$CKPT" --criterion word_kd \
    --teacher-path "$teacher" "${KD[@]}"
  evaluate 09-2x300-seq-kd+seq-inter+word-kd 2x300-seq-kd+seq-inter+word-kd "2x300 Seq-KD + Seq-Inter + Word-KD"
}
source "$(dirname "$0")/../paper_recipe.sh"

#!/usr/bin/env bash
# The multi-seed study: the Bible recipe once per seed on one corpus split, then the mean ± sd of every row
# and each student's paired difference to the baseline of the same seed.
#
#   examples/bible/study.sh [--preset demo] [--seeds 1 2 3] [--workdir runs/study-PRESET] [run.sh options...]
#
# Each seed's run is in WORKDIR/seed-N (models, evaluations, logs, its own report); the report over all
# seeds is WORKDIR/results.{md,json,png}. The seed sets the models' initialisation and the order of the
# training batches; the corpus and its split are the same for every seed. Resumable and --dry-run-able like
# run.sh (any run.sh option is passed on, e.g. --eval-subset valid, --src/--tgt, --jobs, --with-multi: the rows
# "Seq-KD n-best (n=5)" and "Seq-KD MBR-5" in every seed, docs/multi_output.md).
set -euo pipefail
preset=demo seeds=(1 2 3) workdir="" pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) preset="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --seeds) shift; seeds=(); while [ $# -gt 0 ] && [[ "$1" != --* ]]; do seeds+=("$1"); shift; done ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
exec "$(dirname "$0")/run.sh" --preset "$preset" --workdir "${workdir:-runs/study-$preset}" --seeds "${seeds[@]}" \
  "${pass[@]}"

#!/usr/bin/env bash
# The `full` preset (paper proportions: all verses, 2x500 teacher, 2x100 students, K=35) on one GPU machine
# that has torch but no fairseq and no internet, in one command, its results written to one folder.
#
#   examples/bible/gpu.sh --pack                 on a machine with package access: wheels and sdists for an
#                                               offline install into .whl/, the full preset's corpus prepared
#                                               into runs/full/data (binarized, ~10 MB)
#   examples/bible/gpu.sh --run OUT [run.sh options...]
#                                               on the GPU machine, from the repository root with .whl/ and
#                                               runs/full/data copied over: builds fairseq against the
#                                               machine's own torch, installs this package, runs
#                                               `run.sh --preset full --gpus 1 --jobs 4` and copies the
#                                               report, the timings and every step's log into OUT
#
# --jobs 4: one GPU trains up to four of the small students at the same time (they do not fill it).
# PYTHON_TAG (default cp312) and PLATFORM (manylinux_2_17_x86_64) name the GPU machine's Python for --pack.
# --pack downloads everything the plugin and fairseq import at run time and what those need in turn, except
# torch and numpy (the GPU machine's own): --run installs with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
mode="${1:-}"; shift || true

case "$mode" in
  --pack)
    mkdir -p .whl
    pip=("$PYTHON" -m pip download --no-deps -d .whl)
    "${pip[@]}" --no-binary :all: fairseq-fixed==0.12.3.1 antlr4-python3-runtime==4.9.3
    "${pip[@]}" hydra-core==1.3.2 omegaconf==2.3.0 pysword sacrebleu portalocker tabulate colorama tensorboardX \
      tqdm cycler pyparsing python-dateutil tzdata packaging
    for pkg in bitarray lxml regex sentencepiece pyyaml scipy fastchrf \
               matplotlib contourpy fonttools kiwisolver pillow; do
      "${pip[@]}" --python-version "${PYTHON_TAG:-cp312}" --implementation cp \
        --platform "${PLATFORM:-manylinux_2_17_x86_64}" --only-binary :all: "$pkg"
    done
    examples/bible/run.sh --preset full --workdir runs/full --jobs 1 --dry-run > /dev/null  # options are valid
    examples/bible/prepare.sh --out runs/full/data --vocab-size 8000
    du -sh .whl runs/full/data ;;
  --run)
    out="${1:?usage: gpu.sh --run OUT [run.sh options...]}"; shift
    "$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no GPU"; print(torch.__version__, torch.cuda.get_device_name())'
    if ! "$PYTHON" -c 'import fairseq' 2>/dev/null; then
      MAX_JOBS=$(nproc) "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation .whl/*
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e .
    bin="$(dirname "$(command -v "$PYTHON")")"
    status=0
    PATH="$bin:$PATH" examples/bible/run.sh --preset full --gpus 1 --jobs 4 --workdir runs/full "$@" || status=$?
    mkdir -p "$out"
    cp runs/full/results.* runs/full/timings.txt "$out"/ 2>/dev/null || true
    cp -r runs/full/logs runs/full/eval "$out"/ 2>/dev/null || true
    exit "$status" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# Prepare the Spanish→English Bible corpus (the embedded default), or any parallel text.
#
#   examples/bible/prepare.sh --out DIR [--src-lang es --tgt-lang en] [seqkd-prepare options...]
#   examples/bible/prepare.sh --out DIR --src my.src --tgt my.tgt --src-lang xx --tgt-lang yy [options...]
#
# Without --src/--tgt: installs (or finds) the Debian SWORD packages, reads the verse-aligned
# Reina-Valera 1909 (es), World English Bible (en) and King James Version (second English
# reference) with pysword, cleans systematic noise, then runs seqkd-prepare (es→en, or en→es with
# --src-lang en --tgt-lang es, which has no second reference): fixed-seed split
# (1000 valid / 1000 test verses), SentencePiece per side, fairseq-preprocess into DIR/bin.
# Any other option is passed to seqkd-prepare (e.g. --max-words 16 --train-size 7000 --vocab-size 2000).
# Idempotent: a prepared DIR is left as it is.
set -euo pipefail

out="" src="" tgt="" src_lang="" tgt_lang="" pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --src) src="$2"; shift 2 ;;
    --tgt) tgt="$2"; shift 2 ;;
    --src-lang) src_lang="$2"; shift 2 ;;
    --tgt-lang) tgt_lang="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) pass+=("$1"); shift ;;
  esac
done
[ -n "$out" ] || { echo "error: --out DIR is required" >&2; exit 2; }
PYTHON=${PYTHON:-python3}


if [ -n "$src$tgt" ]; then
  [ -n "$src" ] && [ -n "$tgt" ] || { echo "error: give both --src and --tgt" >&2; exit 2; }
  [ -n "$src_lang" ] && [ -n "$tgt_lang" ] || { echo "error: --src/--tgt need --src-lang and --tgt-lang" >&2; exit 2; }
  exec seqkd-prepare --src-file "$src" --tgt-file "$tgt" --src-lang "$src_lang" --tgt-lang "$tgt_lang" \
    --out "$out" "${pass[@]}"
fi

sword=${SWORD_PATH:-/usr/share/sword}
modules_missing() {
  for m in spaRV1909eb engWEB2015eb engKJV2006eb; do
    ls "$sword"/mods.d/ 2>/dev/null | grep -qi "^${m}.conf$" || return 0
  done
  return 1
}
if modules_missing; then
  pkgs="sword-text-sparv sword-text-web sword-text-kjv"
  if command -v apt-get >/dev/null; then
    echo "[prepare] installing $pkgs"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    if ! { $sudo_cmd apt-get install -y $pkgs >/dev/null 2>&1 ||
           { $sudo_cmd apt-get update >/dev/null 2>&1 && $sudo_cmd apt-get install -y $pkgs >/dev/null 2>&1; }; }; then
      echo "error: could not install $pkgs with apt-get; install them yourself, or put the SWORD modules" \
           "spaRV1909eb, engWEB2015eb and engKJV2006eb (crosswire.org) in \$SWORD_PATH (now $sword)" >&2
      exit 1
    fi
  else
    echo "error: the SWORD modules spaRV1909eb, engWEB2015eb, engKJV2006eb are not in $sword and this is not" \
         "a Debian/Ubuntu system: download them from crosswire.org, unpack them into a folder and set" \
         "SWORD_PATH to it (or run with --src/--tgt on your own corpus)" >&2
    exit 1
  fi
fi

corpus="$out/corpus"
if [ ! -f "$corpus/bible.ref" ]; then
  echo "[prepare] reading the Bible modules from $sword"
  "$PYTHON" -m fairseq_seqkd.corpora.bible --out-dir "$corpus" --sword-path "$sword"
fi
case "${src_lang:-es}-${tgt_lang:-en}" in
  es-en) exec seqkd-prepare --src-file "$corpus/bible.es" --tgt-file "$corpus/bible.en" \
           --extra-ref "$corpus/bible.kjv" --ids "$corpus/bible.ref" --src-lang es --tgt-lang en --out "$out" "${pass[@]}" ;;
  en-es) exec seqkd-prepare --src-file "$corpus/bible.en" --tgt-file "$corpus/bible.es" \
           --ids "$corpus/bible.ref" --src-lang en --tgt-lang es --out "$out" "${pass[@]}" ;;
  *) echo "error: the Bible corpus is Spanish and English: --src-lang es --tgt-lang en, or en and es" >&2; exit 2 ;;
esac

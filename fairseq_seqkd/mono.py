"""Source-only text: sentences without a reference, for the teacher to translate (seqkd-prepare --mono-src).

What production distillation adds to the paper's Seq-KD (Mozilla's translations pipeline's ``mono-src``, the
Bergamot and Marian students): the teacher also translates source-language text that has no reference, and the
student learns from all of it. This module turns such a file into the data split :data:`MONO`:

- cleaned as the source side of the parallel text is: empty lines and (with ``max_words``) longer lines out;
- deduplicated against the train, valid and test sources (a sentence of the test set must not reach the
  student through the teacher) and within itself, the first occurrence kept, in the file's order; lines
  compare with their runs of whitespace collapsed, by a 64-bit hash (a false match, which would drop one
  line, has a chance of about n²/2⁶⁵: 3·10⁻⁴ at 10⁸ lines);
- streamed: read twice, holding 9 bytes per line (its hash and its fate; ~40 during the deduplication's sort),
  never the text;
- binarized with the source dictionary only (``mono.SRC-TGT.SRC.{bin,idx}``): no target file, so no later
  step can read a placeholder as gold; fairseq loads the split with ``target`` None.
"""

import collections
import hashlib
import logging
import os

import numpy as np

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open

logger = logging.getLogger(__name__)

#: The data split of source-only sentences.
MONO = "mono"

#: Why a line is left out, by its code in :func:`select` (0: kept).
REASONS = {1: "empty", 2: "longer than --max-words", 3: "in the train, valid or test sources", 4: "repeated"}


def _key(line):
    return int.from_bytes(hashlib.blake2b(" ".join(line.split()).encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


def iter_lines(path):
    """(line number, text without its newline) of a UTF-8 file, streamed; SeqKDError names file and line."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror}") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SeqKDError(f"{path}:{number}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            yield number, text.rstrip("\n").rstrip("\r")


def select(path, known_sources, max_words=0):
    """Which lines of ``path`` to keep: a uint8 array, one code per line (0: kept, else :data:`REASONS`'s)."""
    known = {_key(line) for line in known_sources}
    chunks, pending, codes = [], [], bytearray()
    for _, line in iter_lines(path):
        key = _key(line)
        pending.append(key)
        if not line.strip():
            codes.append(1)
        elif max_words and len(line.split()) > max_words:
            codes.append(2)
        elif key in known:
            codes.append(3)
        else:
            codes.append(0)
        if len(pending) == 1 << 16:  # Python ints cost ~36 bytes each: into 8-byte arrays as we go
            chunks.append(np.array(pending, dtype=np.int64))
            pending = []
    keys = np.concatenate(chunks + [np.array(pending, dtype=np.int64)])
    codes = np.frombuffer(bytes(codes), dtype=np.uint8).copy()
    candidates = np.flatnonzero(codes == 0)
    order = np.argsort(keys[candidates], kind="stable")  # stable: the first occurrence sorts first
    ranked = keys[candidates][order]
    repeated = np.zeros(len(ranked), dtype=bool)
    repeated[1:] = ranked[1:] == ranked[:-1]
    codes[candidates[order[repeated]]] = 4
    return codes


def write_kept(path, codes, out):
    """The lines of ``path`` whose code is 0, stripped, into ``out`` (atomically); their number."""
    kept = 0
    with atomic_open(out) as f:
        for number, line in iter_lines(path):
            if codes[number - 1] == 0:
                f.write(line.strip() + "\n")
                kept += 1
    return kept


def counts(codes):
    """{"lines": N, "kept": K, "removed": {reason: n}} of :func:`select`'s codes."""
    found = collections.Counter(codes.tolist())
    return {"lines": int(len(codes)), "kept": int(found.get(0, 0)),
            "removed": {REASONS[code]: int(found[code]) for code in sorted(REASONS) if found.get(code)}}


def encode_file(spm_model, src, out, chunk=10_000):
    """SentencePiece pieces of every line of ``src`` into ``out`` (atomically), ``chunk`` lines at a time."""
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=spm_model)
    with atomic_open(out) as f:
        lines = []
        for _, line in iter_lines(src):
            lines.append(line)
            if len(lines) == chunk:
                f.writelines(" ".join(p) + "\n" for p in model.encode(lines, out_type=str))
                lines = []
        if lines:
            f.writelines(" ".join(p) + "\n" for p in model.encode(lines, out_type=str))


def check_mono(mono_src, known_sources, max_words):
    """:func:`select`'s codes for ``mono_src``; SeqKDError when no line is left. Run before anything is written,
    so that a bad file stops seqkd-prepare at once."""
    if not os.path.isfile(mono_src):
        raise SeqKDError(f"{mono_src}: no such file")
    codes = select(mono_src, known_sources, max_words)
    report = counts(codes)
    if not report["kept"]:
        raise SeqKDError(f"--mono-src {mono_src}: no line left of {report['lines']} "
                         f"({', '.join(f'{n} {why}' for why, n in report['removed'].items()) or 'empty file'})")
    return codes


def write_mono(mono_src, codes, raw_out, spm_model, tok_out, data, src_lang, tgt_lang, workers=1):
    """The kept lines of ``mono_src`` (:func:`check_mono`'s ``codes``) into ``raw_out``, in subwords into
    ``tok_out``, binarized into ``data`` as the split :data:`MONO`; returns :func:`counts`."""
    from fairseq_seqkd.binarize import binarize_source_only

    report = counts(codes)
    write_kept(mono_src, codes, raw_out)
    encode_file(spm_model, raw_out, tok_out)
    binarize_source_only(data, MONO, src_lang, tgt_lang, tok_out, workers=workers)
    removed = ", ".join(f"{n} {why}" for why, n in report["removed"].items()) or "none"
    logger.info("%s: %d of %d lines kept as the split %s (removed: %s)", mono_src, report["kept"],
                report["lines"], MONO, removed)
    return report

"""Source-only text: sentences without a reference, for the teacher to translate (seqkd-prepare --mono-src).

What production distillation adds to the paper's Seq-KD (Mozilla's translations pipeline's ``mono-src``, the
Bergamot and Marian students): the teacher also translates source-language text that has no reference, and the
student learns from all of it. This module turns such a file into the data split :data:`MONO`:

- cleaned as the source side of the parallel text is: empty lines and (with ``max_words``) longer lines out;
- deduplicated against the train, valid and test sources (a sentence of the test set must not reach the
  student through the teacher) and within itself, the first occurrence kept, in the file's order; lines
  compare with their runs of whitespace collapsed, by a 64-bit hash (a false match, which would drop one
  line, has a chance of about n²/2⁶⁵: 3·10⁻⁴ at 10⁸ lines);
- streamed: read twice; each line's fate is a byte in a file on disk, the candidates' hashes go to 256 bucket
  files sorted one at a time, so memory stays flat whatever the file's size (disk: ~17 bytes per line);
- binarized with the source dictionary only (``mono.SRC-TGT.SRC.{bin,idx}``): no target file, so no later
  step can read a placeholder as gold; fairseq loads the split with ``target`` None.
"""

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile

import numpy as np

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open, stream_lines

logger = logging.getLogger(__name__)

#: The data split of source-only sentences.
MONO = "mono"

#: Why a line is left out, by its code in :func:`select` (0: kept).
REASONS = {1: "empty", 2: "longer than --max-words", 3: "in the train, valid or test sources", 4: "repeated"}


def _key(line):
    return int.from_bytes(hashlib.blake2b(" ".join(line.split()).encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


#: Buckets of the deduplication: a line's candidates go to the bucket of its hash's top bits, so that each bucket
#: is sorted alone (with 256: ~0.5M entries, ~25 MB, per bucket at 123M lines).
BUCKETS = 256


def select(path, known_sources, max_words=0, scratch=None):
    """Which lines of ``path`` to keep: one uint8 code per line (0: kept, else :data:`REASONS`'s), in a file of
    ``scratch`` (a temporary folder by default) mapped read-only: memory does not grow with the file.

    Pass 1 streams the lines, codes empty, too long and known ones at once, and appends each other line's
    (hash, line number) to the bucket of its hash on disk; then each bucket, sorted by hash then line number,
    marks every line that follows an equal hash as repeated."""
    known = {_key(line) for line in known_sources}
    own = scratch is None
    scratch = tempfile.mkdtemp(prefix="seqkd-mono-") if own else scratch
    try:
        codes_path = os.path.join(scratch, "codes.uint8")
        files = contextlib.ExitStack()
        bucket_files = [files.enter_context(open(os.path.join(scratch, f"bucket{b}.int64"), "wb"))
                        for b in range(BUCKETS)]
        pending = []  # hash, line number, hash, line number, ... of the candidates since the last flush

        def flush():
            entries = np.array(pending, dtype=np.int64).reshape(-1, 2)
            buckets = (entries[:, 0] >> 56) % BUCKETS
            order = np.argsort(buckets, kind="stable")
            bounds = np.searchsorted(buckets[order], np.arange(BUCKETS + 1))
            for b in np.flatnonzero(bounds[1:] > bounds[:-1]):
                bucket_files[b].write(entries[order[bounds[b]:bounds[b + 1]]].tobytes())
            pending.clear()

        with files, open(codes_path, "wb") as codes_out:
            block = bytearray()
            for number, line in stream_lines(path):
                key = _key(line)
                if not line.strip():
                    block.append(1)
                elif max_words and len(line.split()) > max_words:
                    block.append(2)
                elif key in known:
                    block.append(3)
                else:
                    block.append(0)
                    pending += (key, number - 1)
                if len(block) >= 1 << 16:
                    codes_out.write(block)
                    block = bytearray()
                    flush()
            codes_out.write(block)
            flush()
        if not os.path.getsize(codes_path):
            return np.zeros(0, dtype=np.uint8)
        codes = np.memmap(codes_path, dtype=np.uint8, mode="r+")
        for b in range(BUCKETS):
            entries = np.fromfile(os.path.join(scratch, f"bucket{b}.int64"), dtype=np.int64).reshape(-1, 2)
            if len(entries) > 1:
                order = np.lexsort((entries[:, 1], entries[:, 0]))  # by hash, then line number
                ranked = entries[order]
                repeated = np.zeros(len(ranked), dtype=bool)
                repeated[1:] = ranked[1:, 0] == ranked[:-1, 0]
                codes[ranked[repeated, 1]] = 4
            os.remove(os.path.join(scratch, f"bucket{b}.int64"))
        codes.flush()
        return np.memmap(codes_path, dtype=np.uint8, mode="r")
    finally:
        if own:  # the mapped file stays readable until the array is dropped (POSIX keeps it)
            shutil.rmtree(scratch, ignore_errors=True)


def write_kept(path, codes, out):
    """The lines of ``path`` whose code is 0, stripped, into ``out`` (atomically); their number."""
    kept = 0
    with atomic_open(out) as f:
        for number, line in stream_lines(path):
            if codes[number - 1] == 0:
                f.write(line.strip() + "\n")
                kept += 1
    return kept


def counts(codes):
    """{"lines": N, "kept": K, "removed": {reason: n}} of :func:`select`'s codes."""
    found = np.bincount(codes, minlength=len(REASONS) + 1) if len(codes) else np.zeros(len(REASONS) + 1, int)
    return {"lines": int(len(codes)), "kept": int(found[0]),
            "removed": {REASONS[code]: int(found[code]) for code in sorted(REASONS) if found[code]}}


def encode_file(spm_model, src, out, chunk=10_000):
    """SentencePiece pieces of every line of ``src`` into ``out`` (atomically), ``chunk`` lines at a time."""
    import sentencepiece as spm

    model = spm.SentencePieceProcessor(model_file=spm_model)
    with atomic_open(out) as f:
        lines = []
        for _, line in stream_lines(src):
            lines.append(line)
            if len(lines) == chunk:
                f.writelines(" ".join(p) + "\n" for p in model.encode(lines, out_type=str))
                lines = []
        if lines:
            f.writelines(" ".join(p) + "\n" for p in model.encode(lines, out_type=str))


def _removed(report):
    return ", ".join(f"{n} {why}" for why, n in report["removed"].items())


def check_mono(mono_src, known_sources, max_words):
    """:func:`select`'s codes for ``mono_src``; SeqKDError when no line is left. Run before anything is written,
    so that a bad file stops seqkd-prepare at once."""
    if not os.path.isfile(mono_src):
        raise SeqKDError(f"{mono_src}: no such file")
    codes = select(mono_src, known_sources, max_words)
    report = counts(codes)
    if not report["kept"]:
        raise SeqKDError(f"--mono-src {mono_src}: no line left of {report['lines']} "
                         f"({_removed(report) or 'empty file'})")
    return codes


def write_mono(mono_src, codes, raw_out, spm_model, tok_out, data, src_lang, tgt_lang, workers=1):
    """The kept lines of ``mono_src`` (:func:`check_mono`'s ``codes``) into ``raw_out``, in subwords into
    ``tok_out``, binarized into ``data`` as the split :data:`MONO`; returns :func:`counts`."""
    from fairseq_seqkd.binarize import binarize_source_only

    report = counts(codes)
    write_kept(mono_src, codes, raw_out)
    encode_file(spm_model, raw_out, tok_out)
    binarize_source_only(data, MONO, src_lang, tgt_lang, tok_out, workers=workers)
    logger.info("%s: %d of %d lines kept as the split %s (removed: %s)", mono_src, report["kept"],
                report["lines"], MONO, _removed(report) or "none")
    return report

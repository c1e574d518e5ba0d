"""One training corpus from several distilled parts (seqkd-join), their sentences kept apart by an ids file.

A part is a pair of line-aligned subword files (``PREFIX.SRC``, ``PREFIX.TGT``: what seqkd-distill or
seqkd-select write), with ``PREFIX.ids`` when a source has several lines (``--keep N``). The joined corpus is
the parts' lines in the order given, and ``OUT.ids`` gives each line a sentence id unique across the parts:
part k's own id (its ``PREFIX.ids``, else its line number) plus the number of source sentences of the parts
before it. So ``fairseq-train --task seqkd_translation --one-target-per-epoch`` and seqkd-topk see one source
sentence wherever one part had one, never a sentence of one part merged with another's.

The usual order: the distilled training set first (its ids then stay those of DATA's training split), then the
distilled source-only text (``seqkd-distill DATA --subset mono``), then anything further. Streamed: one line of
each file at a time.
"""

import contextlib
import logging
import os

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open, stream_lines

logger = logging.getLogger(__name__)


def _part_lines(prefix, src_lang, tgt_lang):
    """(source, target, sentence id or None) of a part's lines; SeqKDError names the file and line."""
    files = [f"{prefix}.{src_lang}", f"{prefix}.{tgt_lang}"]
    ids = f"{prefix}.ids"
    for path in files:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file")
    readers = [stream_lines(path) for path in files + ([ids] if os.path.isfile(ids) else [])]
    while True:
        rows = [next(reader, None) for reader in readers]
        if all(row is None for row in rows):
            return
        if any(row is None for row in rows):
            short = [path for path, row in zip(files + [ids], rows) if row is None][0]
            raise SeqKDError(f"{short}: fewer lines than {files[0]} (the files of a part are line-aligned)")
        number = rows[0][0]
        sid = None
        if len(rows) == 3:
            try:
                sid = int(rows[2][1])
            except ValueError:
                raise SeqKDError(f"{ids}:{number}: {rows[2][1]!r} is not a sentence id") from None
        yield number, rows[0][1], rows[1][1], sid


def join_parts(prefixes, out_prefix, src_lang, tgt_lang):
    """Write ``out_prefix``.{SRC,TGT,ids} from the parts ``prefixes`` (see the module docstring); returns
    {"parts": [{"prefix", "lines", "sentences"}...], "lines": N, "sentences": S}."""
    if not prefixes:
        raise SeqKDError("give at least one part (--part PREFIX)")
    if out_prefix in prefixes:
        raise SeqKDError(f"--out-prefix {out_prefix} is also a part: write the joined corpus elsewhere")
    report, offset, total = [], 0, 0
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(atomic_open(f"{out_prefix}.{ext}")) for ext in (src_lang, tgt_lang, "ids")]
        for prefix in prefixes:
            sentences, last, lines = 0, -1, 0
            for number, src, tgt, sid in _part_lines(prefix, src_lang, tgt_lang):
                if sid is None:
                    sid = number - 1
                elif not (sid == last or sid == last + 1):
                    raise SeqKDError(f"{prefix}.ids:{number}: sentence id {sid} after {last} (a part's ids count "
                                     f"up from 0, a sentence's lines together)")
                last = sid
                sentences = sid + 1
                outs[0].write(src + "\n")
                outs[1].write(tgt + "\n")
                outs[2].write(f"{offset + sid}\n")
                lines += 1
            if not lines:
                raise SeqKDError(f"{prefix}.{src_lang}: an empty part")
            report.append({"prefix": prefix, "lines": lines, "sentences": sentences})
            offset += sentences
            total += lines
    logger.info("joined %d parts into %s.{%s,%s,ids}: %d lines of %d sentences (%s)", len(prefixes), out_prefix,
                src_lang, tgt_lang, total, offset,
                ", ".join(f"{p['prefix']}: {p['lines']} lines, {p['sentences']} sentences" for p in report))
    return {"parts": report, "lines": total, "sentences": offset}

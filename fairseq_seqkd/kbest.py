"""K-best lists: read fairseq-generate output or our K-best file; write ours in corpus order.

Our K-best file is tab-separated text, one row per line, sentences in id order::

    #seqkd-kbest<TAB>v1<TAB>sentences=N<TAB>nbest=K
    ID<TAB>S<TAB><TAB>source
    ID<TAB>T<TAB><TAB>reference          (when the data has references)
    ID<TAB>RANK<TAB>SCORE<TAB>hypothesis (RANK 0 is the best; SCORE as fairseq's H- lines: log2, length-normalised)

fairseq-generate's output (``S-``, ``T-``, ``H-`` lines; ``D-``, ``P-`` and
other lines are ignored) can come in any batch order and with ``--nbest K``.
Either way a malformed input stops with ``FILE:LINE: what is wrong``.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar

from fairseq_seqkd.errors import KBestError
from fairseq_seqkd.textio import NotUTF8, atomic_open, utf8_lines

HEADER = "#seqkd-kbest"
_GENERATE_LINE = re.compile(r"^([A-Z])-(\d+)\t")
_RANKS = [str(rank) for rank in range(1024)]  # the usual spelling of ranks, compared as text


@dataclass
class Sentence:
    id: int
    source: Optional[str] = None
    reference: Optional[str] = None
    hyps: List[Tuple[float, str]] = field(default_factory=list)  # (score, text), best first
    first_line: int = 0  # where the sentence was first seen, for error messages
    hyp_line: int = 0  # where its first hypothesis was


def _score(path, number, text):
    try:
        value = float(text)
    except ValueError:
        raise KBestError(path, number, f"score {text!r} is not a number")
    if math.isnan(value):
        raise KBestError(path, number, f"score {text!r} is not a number")
    return value


def _read_bytes(path, whole=True):
    """The bytes of a file (or of its first line); KBestError for an unreadable or empty file."""
    try:
        with open(path, "rb") as f:
            data = f.read() if whole else f.readline()
    except OSError as e:
        raise KBestError(path, 0, e.strerror.lower())
    if not data:
        raise KBestError(path, 0, "empty file")
    return data


def _read_raw_lines(path):
    data = _read_bytes(path)
    if not data.endswith(b"\n"):
        raise KBestError(path, data.count(b"\n") + 1, "truncated: the last line has no newline")
    try:
        return utf8_lines(data)
    except NotUTF8 as e:
        raise KBestError(path, e.line, "not UTF-8 text")


def _sentence(table, sid, number):
    entry = table.get(sid)
    if entry is None:
        entry = table[sid] = Sentence(sid, first_line=number)
    return entry


def _set_once(path, number, entry, attr, text, what):
    old = getattr(entry, attr)
    if old is not None and old != text:
        raise KBestError(path, number, f"sentence {entry.id} has a second, different {what}")
    setattr(entry, attr, text)


def read_generate_output(path) -> Dict[int, Sentence]:
    """Sentences from fairseq-generate's output (S-, T-, H- lines, any order)."""
    table: Dict[int, Sentence] = {}
    for number, line in enumerate(_read_raw_lines(path), 1):
        match = _GENERATE_LINE.match(line)
        if not match:
            if re.match(r"^[STH]-", line):
                raise KBestError(path, number, f"malformed {line[:2]} line: {line[:60]!r}")
            continue  # log lines and the final BLEU line are not data
        kind, sid = match.group(1), int(match.group(2))
        rest = line[match.end():]
        if kind == "S":
            _set_once(path, number, _sentence(table, sid, number), "source", rest, "source (S-) line")
        elif kind == "T":
            _set_once(path, number, _sentence(table, sid, number), "reference", rest, "reference (T-) line")
        elif kind == "H":
            score, sep, text = rest.partition("\t")
            entry = _sentence(table, sid, number)
            entry.hyp_line = entry.hyp_line or number
            entry.hyps.append((_score(path, number, score), text))
    return table


class KBestFile:
    """Our K-best file, read in pieces of whole sentences (to stream it, and to parse pieces in parallel).

    ``sentences`` is the count its header promises; ``lines`` its number of lines once all pieces are read.
    """

    def __init__(self, path):
        self.path, self.lines = path, 0
        head = _read_bytes(path, whole=False).decode("utf-8", "replace").rstrip("\r\n").split("\t")
        fields = dict(part.split("=", 1) for part in head[2:] if "=" in part)
        if head[0] != HEADER or not fields.get("sentences", "").isdigit():
            raise KBestError(path, 1, f"not a K-best file (expected a first line starting with {HEADER})")
        self.sentences = int(fields["sentences"])

    def pieces(self, size=1 << 22):
        """(number of its first line, bytes) of about ``size`` bytes; a sentence's rows stay in one piece."""
        number, rest = 2, b""
        with open(self.path, "rb") as f:
            f.readline()
            while True:
                block = f.read(size)
                data = rest + block
                cut = len(data) if not block else self._last_sentence(data)
                if cut:
                    if not block and not data.endswith(b"\n"):
                        raise KBestError(self.path, number + data.count(b"\n"),
                                         "truncated: the last line has no newline")
                    yield number, data[:cut]
                    number += data.count(b"\n", 0, cut)
                rest = data[cut:]
                if not block:
                    self.lines = number - 1
                    return

    @staticmethod
    def _last_sentence(data):
        """Where the rows of the last sentence with a complete line in ``data`` start (0: none before it)."""
        end = data.rfind(b"\n")
        if end < 0:
            return 0
        start = data.rfind(b"\n", 0, end) + 1
        tab = data.find(b"\t", start, end)
        if tab < 0:
            return start  # a malformed line: the parser of the next piece names it
        sid = data[start:tab + 1]
        while start and data.startswith(sid, data.rfind(b"\n", 0, start - 1) + 1):
            start = data.rfind(b"\n", 0, start - 1) + 1
        return start


def parse_kbest_rows(path, first_line, data) -> List[Sentence]:
    """The sentences in a piece of our K-best file (UTF-8 bytes of whole lines), in file order."""
    try:
        lines = utf8_lines(data)
    except NotUTF8 as e:
        raise KBestError(path, first_line + e.line - 1, "not UTF-8 text")
    out: List[Sentence] = []
    seen = set()
    current, entry = None, None
    for number, line in enumerate(lines, first_line):
        parts = line.split("\t", 3)
        if len(parts) != 4:
            raise KBestError(path, number, f"expected 4 tab-separated fields, found {len(parts)}")
        sid_text, rank, score, text = parts
        if sid_text != current:  # a sentence's rows come together
            if not sid_text.isdigit():
                raise KBestError(path, number, f"sentence id {sid_text!r} is not a number")
            sid = int(sid_text)
            if sid in seen:
                raise KBestError(path, number, f"rows of sentence {sid} are not together")
            seen.add(sid)
            current, entry = sid_text, Sentence(sid, first_line=number)
            out.append(entry)
        hyps = entry.hyps
        n = len(hyps)
        if (n < len(_RANKS) and rank == _RANKS[n]) or (rank.isdigit() and int(rank) == n):
            if not n:
                entry.hyp_line = number
            hyps.append((_score(path, number, score), text))
        elif rank == "S":
            _set_once(path, number, entry, "source", text, "source row")
        elif rank == "T":
            _set_once(path, number, entry, "reference", text, "reference row")
        elif rank.isdigit():
            raise KBestError(path, number, f"rank {rank} of sentence {entry.id} out of order (expected {n})")
        else:
            raise KBestError(path, number, f"rank {rank!r} is neither a number nor S or T")
    return out


def read_kbest_file(path) -> Dict[int, Sentence]:
    """Sentences from our K-best file (see the module docstring), which must be in id order."""
    kbest = KBestFile(path)
    entries = ((entry.id, entry.first_line, entry) for number, data in kbest.pieces()
               for entry in parse_kbest_rows(path, number, data))
    return {entry.id: entry for entry in in_id_order(path, entries, kbest.sentences, lambda: kbest.lines)}


def is_kbest_file(path):
    """Whether ``path`` starts like our K-best file (else it is taken for fairseq-generate output)."""
    return _read_bytes(path, whole=False).startswith(HEADER.encode())


def read_kbest(path) -> Dict[int, Sentence]:
    """Our K-best file or fairseq-generate output, told apart by the first line."""
    return read_kbest_file(path) if is_kbest_file(path) else read_generate_output(path)


T = TypeVar("T")

#: what to do when fairseq-generate's output lacks sentences
GENERATE_HINT = "; with fairseq-generate use --task seqkd_translation (or --required-batch-size-multiple 1)"


def in_id_order(path, items: Iterable[Tuple[int, int, T]], expected: int, end_line: Callable[[], int] = lambda: 0,
                expected_from="the header", hint="") -> Iterator[T]:
    """The items of ``(sentence id, line, item)`` triples, checked to be sentences 0, 1, ..., expected - 1
    in this order: the one check that a corpus is complete, for every reader and writer of K-best lists.

    KBestError names the line of the first sentence out of place (``end_line()`` for a missing tail).
    """
    count = 0
    for sid, line, item in items:
        if sid < count:
            raise KBestError(path, line, f"sentence {sid} out of order or repeated (after sentence {count - 1})")
        if sid > count:
            raise KBestError(path, line, f"sentence id(s) {count} to {sid - 1} missing{hint}")
        if count >= expected:
            raise KBestError(path, line, f"sentence {sid} beyond the {expected} of {expected_from}")
        count += 1
        yield item
    if count != expected:
        raise KBestError(path, end_line(), f"truncated: {count} sentences, {expected_from} says {expected}")


def check_complete(path, table, need_reference=False, num_sentences=None) -> List[Sentence]:
    """The sentences of ``table`` (read from fairseq-generate's output) in id order; stop on gaps, on
    sentences without hypotheses, or without references when they are needed."""
    if not table:
        raise KBestError(path, 0, "no sentences found")
    ids = sorted(table)
    expected, expected_from = (ids[-1] + 1, "the ids") if num_sentences is None else (num_sentences, "--num-sentences")
    sentences = list(in_id_order(path, ((i, table[i].first_line, table[i]) for i in ids), expected,
                                 expected_from=expected_from, hint=GENERATE_HINT))
    for entry in sentences:
        check_sentence(path, entry, need_reference)
    return sentences


def check_sentence(path, entry, need_reference=False, need_source=False):
    """Stop on a sentence without hypotheses (or without the reference or source that is needed)."""
    if not entry.hyps:
        raise KBestError(path, entry.first_line, f"sentence {entry.id} has no hypotheses")
    if need_reference and entry.reference is None:
        raise KBestError(path, entry.hyp_line, f"hypothesis for sentence {entry.id}, which has no "
                                                 f"reference (T-) line")
    if need_source and entry.source is None:
        raise KBestError(path, entry.first_line, f"sentence {entry.id} has no source (S-) line")


def kbest_header(sentences, nbest):
    """The first line of our K-best file, for ``sentences`` sentences of ``nbest`` hypotheses."""
    return f"{HEADER}\tv1\tsentences={sentences}\tnbest={nbest}\n"


def write_kbest_rows(f, s: Sentence):
    """Write the rows of one sentence to the text file ``f`` (to stream a K-best file in id order)."""
    if s.source is not None:
        f.write(f"{s.id}\tS\t\t{s.source}\n")
    if s.reference is not None:
        f.write(f"{s.id}\tT\t\t{s.reference}\n")
    for rank, (score, text) in enumerate(s.hyps):
        f.write(f"{s.id}\t{rank}\t{score}\t{text}\n")


def write_kbest_file(path, sentences, nbest):
    """Write sentences (in the given order, which should be id order) atomically."""
    with atomic_open(path) as f:
        f.write(kbest_header(len(sentences), nbest))
        for s in sentences:
            write_kbest_rows(f, s)

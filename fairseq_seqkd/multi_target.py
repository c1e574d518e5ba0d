"""Training data with several targets per source (``seqkd-distill --keep N``): its ids file, and one target per
source per epoch (``fairseq-train --task seqkd_translation --one-target-per-epoch``).

The ids file (``OUT.ids``, ``DATA/train.ids`` once binarized) has one line per training pair: the 0-based id
of the source sentence the pair comes from, as a decimal number. Lines of the same id need not be adjacent.

:class:`OneTargetPerSource` wraps the training split: its items are the split's own (same indices, same
``id`` in a batch), but each epoch's batches are built from one pair per source, drawn uniformly at random
with ``numpy.random.default_rng([seed, epoch])``. The draw is a pure function of (seed, epoch): a resumed
run, every DDP rank and every data-loader worker see the same one. fairseq calls ``set_epoch`` before it
builds an epoch's batches (the task's ``rebuild_batches``), and the dataset says it cannot reuse an epoch
iterator across epochs. Only ``ordered_indices`` changes with the epoch: items, sizes and the size filter
are the wrapped split's, so data-loader workers that keep an old copy of the dataset stay correct.
"""

import logging
import os

import numpy as np
from fairseq.data import BaseWrapperDataset

from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)


#: Bytes of an ids file parsed at a time by :func:`read_ids` (its memory beyond the result is a few times this).
READ_BLOCK = 1 << 18
#: The most digits a sentence id may have (< 10**18: it fits an int64 with room to spare).
MAX_DIGITS = 18


def read_ids(path, expected, split="train"):
    """The source ids of the ``expected`` pairs of ``split`` from the ids file ``path`` (int64 array);
    SeqKDError naming the file and line if it is missing or malformed or has another number of lines.

    The file is parsed with numpy, :data:`READ_BLOCK` bytes at a time, into the one array of the result:
    memory is that array (8 bytes a pair) and a few blocks, not a Python object per line."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise SeqKDError(f"{path}: missing: --one-target-per-epoch needs the source id of every {split} pair "
                         f"(seqkd-distill --keep N --binarize DIR writes DIR/train.ids)") from None
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror.lower()}") from None
    try:
        with f:
            return _parse_ids(f, path, expected, split)
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror.lower()}") from None


def _parse_ids(f, path, expected, split):
    f.seek(0, os.SEEK_END)
    if f.tell():
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            f.seek(0)
            lines = 1 + sum(block.count(b"\n") for block in iter(lambda: f.read(READ_BLOCK), b""))
            raise SeqKDError(f"{path}:{lines}: truncated: the last line has no newline")
    f.seek(0)
    ids = np.empty(expected, dtype=np.int64)
    lines, carry = 0, b""  # lines parsed; the bytes of the next line read so far
    for block in iter(lambda: f.read(READ_BLOCK), b""):
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            values = _parse_lines(np.frombuffer(data, dtype=np.uint8, count=cut), path, lines)
            stored = max(0, min(len(values), expected - lines))
            ids[lines:lines + stored] = values[:stored]
            lines += len(values)
        if len(carry) > MAX_DIGITS:  # malformed already: name it without reading all of it
            _malformed(path, lines + 1, *_rest_of_line(f, carry))
    if carry:  # the file grew while being read
        raise SeqKDError(f"{path}:{lines + 1}: truncated: the last line has no newline")
    if lines < expected:
        raise SeqKDError(f"{path}:{lines + 1}: missing: {lines} ids for the {expected} pairs of {split}")
    if lines > expected:
        raise SeqKDError(f"{path}:{expected + 1}: more ids than the {expected} pairs of {split}")
    return ids


def _parse_lines(block, path, before):
    """The numbers of ``block`` (uint8, whole lines, the last ending with a newline), lines ``before`` + 1, ...
    of ``path``; SeqKDError naming the first line that is not a number of 1 to MAX_DIGITS digits."""
    ends = np.flatnonzero(block == 10)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    lengths = ends - starts
    digits = block - np.uint8(48)  # wraps around below b"0": a byte is a digit iff this is < 10
    bad = (lengths == 0) | (lengths > MAX_DIGITS)
    bad[np.searchsorted(ends, np.flatnonzero((digits >= 10) & (block != 10)))] = True  # a line's end follows
    if bad.any():
        first = int(np.argmax(bad))
        _malformed(path, before + first + 1, block[starts[first]:ends[first]].tobytes(), None)
    values = np.zeros(len(ends), dtype=np.int64)
    scale, shortest = 1, int(lengths.min())
    for place in range(1, int(lengths.max()) + 1):  # the last digit of every line, then the one before, ...
        rows = slice(None) if place <= shortest else np.flatnonzero(lengths >= place)
        values[rows] += digits[ends[rows] - place].astype(np.int64) * scale
        scale *= 10
    return values


def _rest_of_line(f, head):
    """The first bytes (enough for 40 characters) of a line of which ``head`` (no newline) was read, and
    whether the whole line is digits; reads ``f`` up to the line's end."""
    digits = head.isdigit()
    head = head[:160]
    for block in iter(lambda: f.read(READ_BLOCK), b""):
        end = block.find(b"\n")
        part = block if end < 0 else block[:end]
        digits = digits and (not part or part.isdigit())
        head += part[:160 - len(head)]
        if end >= 0:
            break
    return head, digits


def _malformed(path, number, line, digits):
    """SeqKDError for line ``number`` of ``path`` (its bytes, or its first bytes; ``digits``: whether the whole
    line is digits, None: ``line`` is all of it)."""
    text = line.decode("utf-8", "replace")
    if line.isdigit() if digits is None else digits:
        raise SeqKDError(f"{path}:{number}: {text[:40]!r} is too large for a sentence id")
    raise SeqKDError(f"{path}:{number}: {text[:40]!r} is not a sentence id (a number >= 0)")


class OneTargetPerSource(BaseWrapperDataset):
    """``dataset`` (pairs whose sources are ``source_ids``) of which each epoch uses one pair per source."""

    def __init__(self, dataset, source_ids, seed, epoch=1):
        super().__init__(dataset)
        if len(source_ids) != len(dataset):
            raise SeqKDError(f"{len(source_ids)} source ids for {len(dataset)} pairs")
        self.seed = seed
        # the pairs grouped by source (stable: in line order within a source)
        self._by_source = np.argsort(source_ids, kind="stable")
        _, self._first, self._count = np.unique(source_ids[self._by_source], return_index=True, return_counts=True)
        self.epoch, self._kept = None, None
        self.set_epoch(epoch)

    @property
    def sources(self):
        return len(self._count)

    def chosen(self, epoch):
        """The indices of the pairs that epoch ``epoch`` trains on, one per source, ascending."""
        pick = np.random.default_rng([self.seed, epoch]).integers(0, self._count)
        return np.sort(self._by_source[self._first + pick])

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False  # the pairs change every epoch: batches are built anew

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        if epoch != self.epoch:
            kept = np.zeros(len(self.dataset), dtype=bool)
            kept[self.chosen(epoch)] = True
            self.epoch, self._kept = epoch, kept

    def ordered_indices(self):
        """The wrapped split's order (its shuffle and length sort), restricted to this epoch's pairs."""
        order = self.dataset.ordered_indices()
        return order[self._kept[order]]

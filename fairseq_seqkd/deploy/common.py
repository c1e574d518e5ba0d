"""What both kinds of exported model share at translation time, with nothing heavier than the standard library.

seqkd-translate imports this before it knows the kind of the directory it was given, so neither torch (the
LSTM runtime) nor ctranslate2 (the Transformer runtime) is imported here: a CTranslate2 directory is
translated with ``ctranslate2`` and ``sentencepiece`` only.
"""

import json
import os
import re
import time

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import refuse_broken_link

#: every model directory of ours has this file (format name and version first)
MANIFEST = "manifest.json"
#: the kind of model directory each manifest ``format`` names (bundle.FORMAT, ct2_bundle.FORMAT)
KINDS = {"fairseq-seqkd-student": "lstm", "fairseq-seqkd-ctranslate2": "ctranslate2"}

#: int8 LSTM decoding: ``sentence`` (one input scale per row, each source encoded alone: a translation does not
#: depend on its batch mates) or ``batch`` (one scale per matrix, batched encoder: faster, and it does)
INT8_ACTIVATIONS = ("sentence", "batch")

_SPACES = re.compile(r"\s+")  # fairseq's tokenize_line


def source_pieces(line, spm=None):
    """The subwords of one source line as fairseq-generate's data holds them: SentencePiece pieces with a
    model, else the line's space-separated words (without </s>)."""
    if spm is not None:
        line = " ".join(spm.encode(line, out_type=str))
    return _SPACES.sub(" ", line).strip().split()


def detokenize(pieces, spm=None):
    """The text fairseq-generate prints for target subwords (``--post-process sentencepiece`` with a model)."""
    out = " ".join(pieces)
    if spm is not None:
        out = out.replace(" ", "").replace("\u2581", " ").strip()
    return out


def load_spm(path):
    """A SentencePiece processor for the model file ``path``; SeqKDError if it cannot be read."""
    try:
        import sentencepiece
    except ModuleNotFoundError as e:
        if e.name != "sentencepiece":
            raise
        raise SeqKDError(f"{path}: reading raw text needs the sentencepiece package: pip install sentencepiece") \
            from None
    try:
        return sentencepiece.SentencePieceProcessor(model_file=path)
    except Exception as e:  # sentencepiece raises OSError/RuntimeError with a C++ message
        raise SeqKDError(f"{path}: not a SentencePiece model ({type(e).__name__})") from None


def read_json(path, folder):
    """A JSON file of a model directory; SeqKDError for a missing or unreadable one."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SeqKDError(f"{path}: no such file ({folder} is not a complete seqkd-export directory)") from None
    except (OSError, ValueError) as e:
        raise SeqKDError(f"{path}: unreadable ({type(e).__name__})") from None


def read_manifest(folder):
    """The manifest of a model directory (a dict); SeqKDError for a missing directory or a foreign file."""
    if not os.path.isdir(folder):
        raise SeqKDError(f"{folder}: no such directory")
    path = os.path.join(folder, MANIFEST)
    manifest = read_json(path, folder)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), str):
        raise SeqKDError(f"{path}: not a model directory written by seqkd-export")
    return manifest


def new_folder(folder):
    """``folder`` as a real path, checked to be absent, an empty directory or an earlier model directory of
    either kind (LSTM or CTranslate2: it is then replaced whole, so rerunning an export gives its output anew);
    else SeqKDError."""
    refuse_broken_link(folder, folder)
    real = os.path.realpath(folder)
    if os.path.exists(real) and not (os.path.isdir(real) and (not os.listdir(real) or _is_model_directory(real))):
        raise SeqKDError(f"{folder}: exists and is neither empty nor an exported model (choose another --out)")
    return real


def _is_model_directory(folder):
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
            return json.load(f).get("format") in KINDS
    except (OSError, ValueError, AttributeError):
        return False


class LineTranslator:
    """What both translators share: lines of text in, translations out. A subclass gives ``source_ids``,
    ``check_lengths``, ``translate_ids`` and ``text``."""

    def translate(self, lines, batch_size=1, first_line=1):
        """Translations of ``lines`` in order (all lines are checked before any is decoded)."""
        sources = [self.source_ids(line, f"line {first_line + i}") for i, line in enumerate(lines)]
        for i, ids in enumerate(sources):
            self.check_lengths(ids, f"line {first_line + i}")
        out = []
        for start in range(0, len(sources), batch_size):
            out += [self.text(h) for h in self.translate_ids(sources[start:start + batch_size])]
        return out


class Summary:
    """The closing line of seqkd-translate, after fairseq-generate's: counts, seconds, rates."""

    def __init__(self):
        self.sentences = self.words = 0
        self.seconds = 0.0

    def timed(self, lines, fn):
        start = time.perf_counter()
        result = fn()
        self.seconds += time.perf_counter() - start
        self.sentences += len(lines)
        self.words += sum(len(line.split()) for line in lines)
        return result

    def line(self):
        s = max(self.seconds, 1e-9)
        return (f"Translated {self.sentences:,} sentences ({self.words:,} source words) in {self.seconds:.1f}s "
                f"({self.sentences / s:.2f} sentences/s, {self.words / s:.2f} source words/s)")

"""Translate lines of text with an exported student (``seqkd-translate``), without fairseq.

A line becomes source ids as fairseq-generate's data would hold them (SentencePiece pieces when the
directory has a SentencePiece model, else the line's space-separated subwords; unknown ones are
<unk>; </s> appended). Lines are decoded in batches of the lines' order, longest first inside a
batch as fairseq's packed encoder wants, and come back in input order. The output is fairseq-
generate's best hypothesis as text: subwords joined by spaces, or, with a SentencePiece model, the
words (fairseq's ``--post-process sentencepiece``).

Length limits are fairseq's, per sentence: at most ``int(max_len_a * n + max_len_b)`` target words
for a source of n ids (its </s> included), and at most the model's ``max_target_positions - 1``; a
source longer than the model's ``max_source_positions`` (its </s> included) is an error, as in
fairseq-generate. fairseq applies ``max_len_a`` to the longest source of a batch; with
``max_len_a = 0`` (its default) or batches of one sentence the limits are the same.

An int8 export translates each sentence as it would alone, whatever the batch, unless
``int8_activations="batch"`` (faster batches; see :mod:`fairseq_seqkd.deploy.network`).
"""

from typing import List, Sequence

import torch

from fairseq_seqkd.deploy import bundle as bundle_io
from fairseq_seqkd.deploy.common import LineTranslator, INT8_ACTIVATIONS, Summary, detokenize, load_spm, source_pieces  # noqa: F401
from fairseq_seqkd.deploy.network import LSTMNet
from fairseq_seqkd.deploy.search import Hypothesis, search
from fairseq_seqkd.errors import SeqKDError


class Translator(LineTranslator):
    """An exported student with decoding options; see the module docstring."""

    def __init__(self, loaded: "bundle_io.Bundle", beam: int = 1, lenpen: float = 1.0, max_len_a: float = 0.0,
                 max_len_b: int = 200, min_len: int = 1, int8_activations: str = "sentence"):
        if beam < 1:
            raise SeqKDError(f"--beam {beam}: must be at least 1")
        if int8_activations not in INT8_ACTIVATIONS:
            raise SeqKDError(f"--int8-activations {int8_activations}: choose one of {', '.join(INT8_ACTIVATIONS)}")
        self.bundle = loaded
        self.source_vocab, self.target_vocab = loaded.source_vocab, loaded.target_vocab
        config = loaded.model_config
        try:
            self.net = LSTMNet(config, loaded.weights, pad=self.source_vocab.pad, target_pad=self.target_vocab.pad,
                               int8_activations=int8_activations)
        except (KeyError, RuntimeError) as e:
            raise SeqKDError(f"{bundle_io.WEIGHTS}: does not match the manifest's model "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
        self.beam, self.lenpen, self.min_len = beam, lenpen, min_len
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.max_source_positions = int(config["max_source_positions"])
        self.max_target_positions = int(config["max_target_positions"])
        self.spm = None
        if loaded.spm_path:
            self.spm = load_spm(loaded.spm_path)

    @classmethod
    def load(cls, folder, **options):
        return cls(bundle_io.load(folder), **options)

    @property
    def quantized(self):
        return self.net.int8

    # -- text <-> ids ----------------------------------------------------------------------------

    def source_ids(self, line: str, where: str = "line") -> List[int]:
        """Source ids of one line (</s> appended); SeqKDError if longer than the model's limit."""
        ids = self.source_vocab.encode(source_pieces(line, self.spm))
        if len(ids) > self.max_source_positions:
            raise SeqKDError(f"{where}: {len(ids) - 1} source tokens, more than the model's limit of "
                             f"{self.max_source_positions - 1} (+ </s>)")
        return ids

    def max_len(self, n_ids: int) -> int:
        """fairseq's ``max_len`` for a source of ``n_ids`` ids."""
        return min(int(self.max_len_a * n_ids + self.max_len_b), self.max_target_positions - 1)

    def check_lengths(self, ids: Sequence[int], where: str = "line"):
        if self.max_len(len(ids)) < self.min_len:
            raise SeqKDError(f"{where}: --max-len-a {self.max_len_a} --max-len-b {self.max_len_b} allow "
                             f"{self.max_len(len(ids))} target words, fewer than the minimum of {self.min_len}")

    def text(self, hypothesis: Hypothesis) -> str:
        """The hypothesis as fairseq-generate prints it (with --post-process sentencepiece if we have SPM)."""
        return detokenize(self.target_vocab.decode(hypothesis.tokens), self.spm)

    # -- decoding --------------------------------------------------------------------------------

    def translate_ids(self, sources: Sequence[Sequence[int]]) -> List[Hypothesis]:
        """The best hypothesis for each source (ids with </s>), decoded as one batch."""
        order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))  # stable: longest first
        longest = len(sources[order[0]])
        src = torch.full((len(sources), longest), self.source_vocab.pad, dtype=torch.long)
        for row, i in enumerate(order):
            src[row, :len(sources[i])] = torch.tensor(sources[i], dtype=torch.long)
        src = src.to(self.net.device)
        lengths = torch.tensor([len(sources[i]) for i in order], dtype=torch.long)
        max_lens = [self.max_len(len(sources[i])) for i in order]
        enc = self.net.encode(src, lengths)
        hyps = search(self.net, enc, max_lens, beam=self.beam, lenpen=self.lenpen, min_len=self.min_len,
                      eos=self.target_vocab.eos)
        out = [None] * len(sources)
        for row, i in enumerate(order):
            out[i] = hyps[row]
        return out

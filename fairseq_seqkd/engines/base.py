"""What every engine shares: fairseq's per-batch length limit and the strings of a K-best list."""

import math
from typing import List, Sequence

import torch

from fairseq_seqkd.kbest import Sentence


class Engine:
    """Decodes fixed batches of a fairseq dataset into K-best lists (:meth:`decode`).

    ``seconds`` adds up the time spent decoding (not building strings)."""

    name = "?"

    def __init__(self, task, model, beam, nbest, max_len_a, max_len_b, lenpen):
        self.task, self.beam, self.nbest, self.lenpen = task, beam, nbest, lenpen
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.max_decoder_positions = model.max_decoder_positions()
        self.source_dictionary, self.target_dictionary = task.source_dictionary, task.target_dictionary
        self.eos = self.target_dictionary.eos()
        self.seconds = 0.0

    def max_len(self, longest_source: int) -> int:
        """fairseq's SequenceGenerator limit for a batch whose longest source has ``longest_source`` ids
        (its </s> included): at most this many words before </s>."""
        return min(int(self.max_len_a * longest_source + self.max_len_b), self.max_decoder_positions - 1)

    def decode(self, dataset, batch: Sequence[int]) -> List[Sentence]:
        raise NotImplementedError

    def note(self) -> str:
        """What the engine adds to the end-of-run log line (e.g. work beyond the search itself)."""
        return ""

    # -- strings, as fairseq-generate's S-, T- and H- lines ---------------------------------------

    def sentence(self, dataset, i: int, hyps) -> Sentence:
        """Sentence ``i``'s K-best list; ``hyps``: [(score in natural log, target ids)], best first."""
        from fairseq_seqkd.generation import reference_string

        item = dataset[int(i)]
        strip = {self.eos}
        entry = Sentence(int(i), source=self.source_dictionary.string(item["source"], extra_symbols_to_ignore=strip))
        if item.get("target") is not None:
            entry.reference = reference_string(self.target_dictionary, item["target"], strip)
        entry.hyps = [(float(score) / math.log(2),
                       self.target_dictionary.string(torch.as_tensor(ids, dtype=torch.long), extra_symbols_to_ignore=strip))
                      for score, ids in hyps[:self.nbest]]
        return entry

"""The ``seqkd`` engine: our LSTM decoder (:mod:`fairseq_seqkd.deploy`) on a fairseq LSTM teacher.

The teacher's weights go through :func:`fairseq_seqkd.deploy.export.from_fairseq` (checked against
fairseq's network on a probe sentence) into :class:`~fairseq_seqkd.deploy.network.LSTMNet`, and each
fixed batch is searched with :func:`~fairseq_seqkd.deploy.search.search_nbest`, which replays fairseq's
beam search rule for rule. Sources are right-padded, longest first, as fairseq's packed encoder takes
them, and every sentence of a batch gets the batch's length limit, as in fairseq. In float32 the
outputs are fairseq's (the share is measured, docs/engines.md). With ``int8`` the decoder's matrix
products are int8 with one input scale per matrix (``int8_activations="batch"``): batches are fixed
for the whole split, so a sentence's output is still the same in every run, shard and resume.
"""

import time

import torch

from fairseq_seqkd.engines.base import Engine


class LSTMEngine(Engine):
    name = "seqkd"

    def __init__(self, task, model, quantize="float32", use_cuda=False, **search):
        super().__init__(task, model, **search)
        from fairseq_seqkd.deploy.export import from_fairseq
        from fairseq_seqkd.deploy.network import LSTMNet

        config, weights, src_vocab, tgt_vocab = from_fairseq(
            model, task.source_dictionary, task.target_dictionary, "int8" if quantize == "int8" else None)
        self.pad = src_vocab.pad
        self.net = LSTMNet(config, weights, pad=src_vocab.pad, target_pad=tgt_vocab.pad,
                           int8_activations="batch")
        if use_cuda:
            if quantize == "int8":
                from fairseq_seqkd.errors import SeqKDError

                raise SeqKDError("--engine seqkd --engine-quantize int8 runs on the CPU (fbgemm); add --cpu, or "
                                 "use float32 on the GPU")
            self.net.to("cuda")

    @torch.no_grad()
    def decode(self, dataset, batch):
        from fairseq_seqkd.deploy.search import search_nbest

        sources = [dataset[int(i)]["source"] for i in batch]
        order = sorted(range(len(batch)), key=lambda k: -len(sources[k]))
        start = time.perf_counter()
        longest = len(sources[order[0]])
        src = torch.full((len(batch), longest), self.pad, dtype=torch.long)
        for row, k in enumerate(order):
            src[row, :len(sources[k])] = sources[k]
        lengths = torch.tensor([len(sources[k]) for k in order], dtype=torch.long)
        enc = self.net.encode(src.to(self.net.device), lengths)
        found = search_nbest(self.net, enc, [self.max_len(longest)] * len(batch), beam=self.beam, nbest=self.nbest,
                             lenpen=self.lenpen, min_len=1, eos=self.eos)
        self.seconds += time.perf_counter() - start
        return [self.sentence(dataset, batch[k], [(h.score, h.tokens) for h in hyps])
                for k, hyps in zip(order, found)]

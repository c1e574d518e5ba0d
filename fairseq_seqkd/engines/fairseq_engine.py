"""The ``fairseq`` engine: fairseq's SequenceGenerator, as fairseq-generate runs it (the reference)."""

from fairseq_seqkd.engines.base import Engine


class FairseqEngine(Engine):
    name = "fairseq"

    def __init__(self, task, model, use_cuda=False, **search):
        super().__init__(task, model, **search)
        from fairseq_seqkd.generation import Generator

        self.use_cuda = use_cuda
        self.generator = Generator(task, model, beam=self.beam, nbest=self.nbest, max_len_a=self.max_len_a,
                                   max_len_b=self.max_len_b, lenpen=self.lenpen)

    @property
    def seconds(self):
        return self.generator.seconds

    @seconds.setter
    def seconds(self, value):
        if hasattr(self, "generator"):
            self.generator.seconds = value

    def decode(self, dataset, batch):
        from fairseq_seqkd.generation import collate

        sample = collate(dataset, batch, self.use_cuda)
        hypos = self.generator.generate(sample)
        return self.generator.kbest_sentences(sample, hypos)

"""Translate lines of text with a CTranslate2 model directory (``seqkd-translate``): ctranslate2 and sentencepiece
only, neither torch nor fairseq.

A line becomes source subwords as fairseq-generate's data would hold them (SentencePiece pieces when the
directory has a SentencePiece model, else the line's space-separated subwords; CTranslate2 maps unknown ones
to <unk> and appends </s>, as fairseq does). The output is fairseq-generate's best hypothesis as text, as
:mod:`fairseq_seqkd.deploy.translator` gives it for an LSTM directory.

Length limits are fairseq's, per sentence: at most ``int(max_len_a * n + max_len_b)`` target words for a
source of n subwords plus its </s>, and at most the model's ``max_target_positions - 1`` (CTranslate2's
``max_decoding_length``; sentences of a batch with different limits are decoded in one call per limit); a
source longer than ``max_source_positions`` (its </s> included) is an error, as in fairseq-generate.

Where a hypothesis reaches its limit, fairseq forces </s> there and scores it, CTranslate2 stops without it.
With beam search the best hypothesis can then differ (fairseq's normalised score of a cut hypothesis counts
the forced </s>), so every beam hypothesis cut at the limit is rescored with its </s> (CTranslate2's
``score_batch``) and the finished hypotheses are taken and ranked as fairseq takes and ranks them
(:func:`fairseq_ranking`, the rule of :mod:`fairseq_seqkd.engines.ctranslate2_engine`). Greedy search needs
none of that: its one hypothesis has the same words either way. Without a binding limit nothing is rescored.
An empty line is the one difference left: CTranslate2 gives an empty translation, fairseq decodes its </s>.
"""

from typing import List, NamedTuple, Sequence

from fairseq_seqkd.deploy import ct2_bundle
from fairseq_seqkd.deploy.common import LineTranslator, detokenize, load_spm, source_pieces
from fairseq_seqkd.errors import SeqKDError

EOS = "</s>"
INSTALL = "pip install ctranslate2 sentencepiece"


class Hypothesis(NamedTuple):
    """A translation: target subwords (without </s>) and fairseq's score (natural log, length-normalised)."""

    tokens: List[str]
    score: float


def import_ctranslate2(needed_by="a CTranslate2 model directory", install=INSTALL):
    """The ctranslate2 module; SeqKDError saying what needs it and how to install it where it is missing."""
    try:
        import ctranslate2
    except ModuleNotFoundError as e:
        if e.name != "ctranslate2":
            raise
        raise SeqKDError(f"{needed_by} needs the ctranslate2 package: {install}") from None
    return ctranslate2


def fairseq_ranking(ended, cut, cumulative, beam, lenpen):
    """fairseq's finished hypotheses, best first, from CTranslate2's: ``ended`` [(score, tokens)] ended with
    </s> before the limit; ``cut`` [tokens] stopped at the limit, with ``cumulative`` their log-probabilities
    with a forced </s>. fairseq finalises, of the hypotheses alive at the limit, the best by cumulative score
    until it has ``beam``, normalised as ``cumulative / (length + 1) ** lenpen``; then sorts all by score."""
    order = sorted(range(len(cut)), key=lambda k: -cumulative[k])[:max(beam - len(ended), 0)]
    hyps = list(ended) + [(cumulative[k] / (len(cut[k]) + 1) ** lenpen, cut[k]) for k in order]
    return sorted(hyps, key=lambda h: -h[0])


def _one_line(e):
    return " ".join(str(e).split())[:200] or type(e).__name__


class CT2Translator(LineTranslator):
    """A CTranslate2 model directory with decoding options; see the module docstring."""

    kind = ct2_bundle.KIND

    def __init__(self, loaded: ct2_bundle.CT2Bundle, beam: int = 1, lenpen: float = 1.0, max_len_a: float = 0.0,
                 max_len_b: int = 200, min_len: int = 1, threads: int = None):
        if beam < 1:
            raise SeqKDError(f"--beam {beam}: must be at least 1")
        ctranslate2 = import_ctranslate2()
        manifest = loaded.manifest
        self.bundle = loaded
        self.quantized = manifest["quantize"] == "int8"
        try:  # an int8 directory holds int8 weights: "int8" keeps them as they are
            self.model = ctranslate2.Translator(loaded.folder, device="cpu",
                                                compute_type="int8" if self.quantized else "float32",
                                                inter_threads=1, intra_threads=threads or 0)
        except (RuntimeError, ValueError, OSError) as e:
            raise SeqKDError(f"{loaded.folder}: CTranslate2 {ctranslate2.__version__} cannot load this model (written "
                             f"with CTranslate2 {manifest.get('ctranslate2', '?')}: {_one_line(e)})") from None
        self.beam, self.lenpen, self.min_len = beam, lenpen, min_len
        self.max_len_a, self.max_len_b = max_len_a, max_len_b
        self.max_source_positions = int(manifest["max_source_positions"])
        self.max_target_positions = int(manifest["max_target_positions"])
        self.spm = load_spm(loaded.spm_path) if loaded.spm_path else None
        self.rescored = 0  # hypotheses cut at the length limit and rescored with </s>
        #: where the CPU's int8 products saturate (no VNNI), a warning for the user (fairseq_seqkd.int8_cpu)
        self.warning = None
        if self.quantized:
            from fairseq_seqkd.int8_cpu import describe, this_cpu_ctranslate2_int8_isa

            isa = this_cpu_ctranslate2_int8_isa()
            if isa is None or not isa.vnni:
                self.warning = f"warning: {describe(isa).replace('--engine-quantize float32', 'a float32 export')}"

    @classmethod
    def load(cls, folder, **options):
        return cls(ct2_bundle.load(folder), **options)

    # -- text <-> subwords (the "ids" of an LSTM directory's translator) ------------------------

    def source_ids(self, line: str, where: str = "line") -> List[str]:
        """The source subwords of one line (without </s>, which CTranslate2 adds); SeqKDError if longer than
        the model's limit."""
        pieces = source_pieces(line, self.spm)
        if len(pieces) + 1 > self.max_source_positions:
            raise SeqKDError(f"{where}: {len(pieces)} source tokens, more than the model's limit of "
                             f"{self.max_source_positions - 1} (+ </s>)")
        return pieces

    def max_len(self, n_ids: int) -> int:
        """fairseq's ``max_len`` for a source of ``n_ids`` ids (its </s> included)."""
        return min(int(self.max_len_a * n_ids + self.max_len_b), self.max_target_positions - 1)

    def check_lengths(self, pieces: Sequence[str], where: str = "line"):
        limit = self.max_len(len(pieces) + 1)
        if limit < self.min_len:
            raise SeqKDError(f"{where}: --max-len-a {self.max_len_a} --max-len-b {self.max_len_b} allow "
                             f"{limit} target words, fewer than the minimum of {self.min_len}")

    def text(self, hypothesis: Hypothesis) -> str:
        """The hypothesis as fairseq-generate prints it (with --post-process sentencepiece if we have SPM)."""
        return detokenize(hypothesis.tokens, self.spm)

    # -- decoding --------------------------------------------------------------------------------

    def translate_ids(self, sources: Sequence[Sequence[str]]) -> List[Hypothesis]:
        """The best hypothesis for each source (subwords without </s>), decoded as one batch per length limit."""
        groups = {}
        for i, source in enumerate(sources):
            groups.setdefault(self.max_len(len(source) + 1), []).append(i)
        out = [None] * len(sources)
        for limit, rows in groups.items():
            for i, hyp in zip(rows, self._decode([list(sources[i]) for i in rows], limit)):
                out[i] = hyp
        return out

    def _decode(self, sources, limit):
        results = self.model.translate_batch(
            sources, beam_size=self.beam, num_hypotheses=self.beam, length_penalty=self.lenpen,
            max_decoding_length=limit, min_decoding_length=self.min_len, max_input_length=0, return_scores=True,
            return_end_token=True)
        cuts = [[h for h in r.hypotheses if not h or h[-1] != EOS] if self.beam > 1 else [] for r in results]
        pairs = [(source, h) for source, cut in zip(sources, cuts) for h in cut]
        scored = iter(self.model.score_batch([s for s, _ in pairs], [h for _, h in pairs], max_input_length=0)
                      if pairs else [])
        self.rescored += len(pairs)
        out = []
        for result, cut in zip(results, cuts):
            if not cut:  # the best is CTranslate2's (greedy: its one hypothesis, </s> dropped if it has one)
                tokens = result.hypotheses[0]
                out.append(Hypothesis(tokens[:-1] if tokens and tokens[-1] == EOS else tokens, result.scores[0]))
                continue
            ended = [(s, h[:-1]) for s, h in zip(result.scores, result.hypotheses) if h and h[-1] == EOS]
            score, tokens = fairseq_ranking(ended, cut, [sum(next(scored).log_probs) for _ in cut], self.beam,
                                            self.lenpen)[0]
            out.append(Hypothesis(tokens, score))
        return out

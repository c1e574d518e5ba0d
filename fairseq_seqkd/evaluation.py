"""The numbers of the paper's Table 1 for one model: BLEU with greedy decoding (K=1) and beam search (K=5),
gold-data perplexity, p(ŷ), parameters and decoding speed (Kim & Rush 2016, §5).

Decoding goes through one of seqkd-distill's engines (:mod:`fairseq_seqkd.engines`; by default fairseq's
own generator, so the outputs are fairseq-generate's), and the speed figures are that engine's; p(ŷ) is
always the fairseq model's probability of its own greedy output. BLEU is sacrebleu's corpus BLEU of the
detokenized outputs, the number sacrebleu gives on fairseq-generate's output with ``--post-process``.

Speed is source words per second at batch size 1 (the paper's setting), measured so that it means
something on a shared or noisy machine: a fixed number of CPU threads (recorded), a few warm-up sentences
that are not timed, at least ``sentences`` sentences and ``min_seconds`` seconds per measurement (the
sentences decoded again if there are fewer), and the median of ``repeats`` measurements with its spread,
greedy and beam search alternating.
"""

import dataclasses
import json
import logging
import math
import os
import platform
import statistics
from typing import Optional, Sequence

import torch

from fairseq_seqkd import generation
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.subwords import remove_subwords
from fairseq_seqkd.textio import atomic_write_lines, read_lines

logger = logging.getLogger("seqkd-eval")


@dataclasses.dataclass
class SpeedOptions:
    """How batch-size-1 decoding speed is measured."""

    sentences: int = 0  # sentences per measurement, the first ones of the subset (0: all of them)
    repeats: int = 3  # measurements; the median is reported, with the spread
    warmup: int = 2  # sentences decoded before each model's first measurement, not timed
    min_seconds: float = 1.0  # a measurement goes on (decoding the sentences again) until at least this long
    threads: int = 1  # CPU threads while timing (torch.set_num_threads); recorded in the result

    def check(self):
        for name in ("sentences", "warmup"):
            if getattr(self, name) < 0:
                raise SeqKDError(f"--speed-{name} {getattr(self, name)}: must be at least 0")
        for name in ("repeats", "threads"):
            if getattr(self, name) < 1:
                raise SeqKDError(f"--speed-{name} {getattr(self, name)}: must be at least 1")
        if self.min_seconds < 0:
            raise SeqKDError(f"--speed-min-seconds {self.min_seconds}: must be at least 0")


@dataclasses.dataclass
class EvalOptions:
    """What seqkd-eval measures (its command-line options, same names)."""

    data: str
    path: str
    subset: str = "test"
    source_lang: Optional[str] = None
    target_lang: Optional[str] = None
    beam: int = 5
    remove_bpe: str = "sentencepiece"
    refs: Optional[str] = None  # reference text (default: the subset's targets)
    extra_refs: Sequence[str] = ()
    max_tokens: int = 4000  # batch size of the BLEU runs
    max_len_a: float = 0.0
    max_len_b: int = 200
    lenpen: float = 1.0
    fp16: bool = False
    cpu: bool = False
    engine: str = "fairseq"  # who decodes (fairseq_seqkd.engines): fairseq, ctranslate2 or seqkd
    engine_quantize: Optional[str] = None
    engine_cache: Optional[str] = None
    hyps_out: Optional[str] = None  # write the detokenized outputs to HYPS_OUT.greedy / .beam
    name: Optional[str] = None
    speed: SpeedOptions = dataclasses.field(default_factory=SpeedOptions)


def _gold_nll(task, model, dataset, batches, use_cuda):
    """Summed natural-log NLL of the gold targets (EOS included) and the number of target tokens."""
    nll, ntokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            sample = generation.collate(dataset, batch, use_cuda)
            net_output = model(**sample["net_input"])
            lprobs = model.get_normalized_probs(net_output, log_probs=True)
            target = sample["target"]
            picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            nll -= float(picked.masked_fill(target.eq(task.target_dictionary.pad()), 0).double().sum())
            ntokens += int(sample["ntokens"])
    return nll, ntokens


def _best_hypotheses(engine, dataset, batches):
    """{id: subword text} of the best hypothesis of every sentence."""
    return {entry.id: entry.hyps[0][1] for batch in batches for entry in engine.decode(dataset, batch)}


def _greedy_log_probs(generator, dataset, batches, use_cuda):
    """{id: summed natural-log probability} of the model's own greedy output (fairseq's), EOS included."""
    out = {}
    for batch in batches:
        sample = generation.collate(dataset, batch, use_cuda)
        for sid, hypos in zip(sample["id"].tolist(), generator.generate(sample)):
            out[sid] = float(hypos[0]["positional_scores"].double().sum())
    return out


def _measure(engine, dataset, indices, words, sentences, min_seconds):
    """Source words/s of one measurement: sentences ``indices`` decoded one at a time, again and again, until
    at least ``sentences`` sentences and ``min_seconds`` seconds; returns (words/s, sentences decoded)."""
    engine.seconds, decoded, total_words = 0.0, 0, 0
    while decoded < sentences or engine.seconds < min_seconds:
        k = decoded % len(indices)
        engine.decode(dataset, [indices[k]])
        total_words += words[k]
        decoded += 1
    return total_words / max(engine.seconds, 1e-12), decoded


def measure_speed(engines, dataset, src_words, speed: SpeedOptions):
    """{key: summary} of the batch-size-1 speed of each engine ({key: Engine}), see the module doc."""
    n = min(len(dataset), speed.sentences) if speed.sentences else len(dataset)
    if n == 0:
        raise SeqKDError("no sentences to time")
    indices = list(range(n))
    words = [src_words[i] for i in range(n)]
    threads_before = torch.get_num_threads()
    torch.set_num_threads(speed.threads)
    try:
        for engine in engines.values():
            for k in range(speed.warmup):
                engine.decode(dataset, [indices[k % n]])
        runs = {key: [] for key in engines}
        decoded = {key: [] for key in engines}
        for _ in range(speed.repeats):
            for key, engine in engines.items():  # alternating, so that drift hits both alike
                rate, count = _measure(engine, dataset, indices, words, n, speed.min_seconds)
                runs[key].append(rate)
                decoded[key].append(count)
    finally:
        torch.set_num_threads(threads_before)
    out = {}
    for key, rates in runs.items():
        median = statistics.median(rates)
        out[key] = {"median": median, "runs": rates, "spread": (max(rates) - min(rates)) / median if median else 0.0,
                    "decoded": statistics.median(decoded[key])}
    return out, n


def _engine(options, task, model, beam, use_cuda, threads=None):
    from fairseq_seqkd.engines import build_engine

    return build_engine(options.engine, options.engine_quantize, task, model, options.path, beam=beam, nbest=1,
                        max_len_a=options.max_len_a, max_len_b=options.max_len_b, lenpen=options.lenpen,
                        use_cuda=use_cuda, cache_dir=options.engine_cache, threads=threads)


def evaluate(options: EvalOptions):
    """Evaluate one model; returns the result as a dict (the keys of seqkd-eval's JSON)."""
    import sacrebleu

    from fairseq_seqkd.engines import check_engine

    options.speed.check()
    options = dataclasses.replace(options, engine_quantize=check_engine(options.engine, options.engine_quantize,
                                                                        options.fp16))
    ref_paths = ([options.refs] if options.refs else []) + list(options.extra_refs)
    for path in ref_paths:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file")
    task = generation.load_split(options.data, options.subset, options.source_lang, options.target_lang)
    model, use_cuda = generation.load_for_generation(options.path, task, "model", options.cpu, options.fp16)
    dataset = task.dataset(options.subset)
    n = len(dataset)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    strip = {tgt_dict.eos()}

    def words(dictionary, tokens):
        """Detokenized text of a token sequence, as fairseq-generate --post-process writes it."""
        return remove_subwords(dictionary.string(tokens, extra_symbols_to_ignore=strip), options.remove_bpe)

    if options.refs:
        refs = [read_lines(options.refs)]
    else:  # fairseq-generate's T- lines (unknown words escaped), detokenized
        refs = [[remove_subwords(generation.reference_string(tgt_dict, dataset.tgt[i], strip), options.remove_bpe)
                 for i in range(n)]]
    refs += [read_lines(p) for p in options.extra_refs]
    for path, lines in zip(([options.refs] if options.refs else ["(targets)"]) + list(options.extra_refs), refs):
        if len(lines) != n:
            raise SeqKDError(f"{path}: {len(lines)} lines, but subset '{options.subset}' has {n} sentences")
    src_words = [len(words(src_dict, dataset.src[i]).split()) for i in range(n)]
    batches = generation.fixed_batches(task, model, options.subset, max_tokens=options.max_tokens)
    result = {"name": options.name, "checkpoint": os.path.abspath(options.path), "subset": options.subset,
              "sentences": n, "beam": options.beam}
    engines = {key: _engine(options, task, model, beam, use_cuda) for key, beam in (("greedy", 1), ("beam", options.beam))}
    result["engine"] = engines["beam"].name
    result["engine_quantize"] = options.engine_quantize
    isa = getattr(engines["beam"], "int8_isa", None)
    if isa is not None:  # where int8 quality depends on the CPU (fairseq_seqkd.int8_cpu)
        result["engine_int8_isa"] = isa.name
    bleu, multi = sacrebleu.BLEU(), sacrebleu.BLEU()
    for key, engine in engines.items():
        engine.seconds = 0.0
        hyps = _best_hypotheses(engine, dataset, batches)
        texts = [remove_subwords(hyps[i], options.remove_bpe) for i in range(n)]
        result[f"bleu_{key}"] = bleu.corpus_score(texts, refs[:1]).score
        if options.extra_refs:
            result[f"bleu_{key}_multiref"] = multi.corpus_score(texts, refs).score
        result[f"src_words_per_sec_{key}_batched"] = sum(src_words) / engine.seconds
        if options.hyps_out:
            atomic_write_lines(f"{options.hyps_out}.{key}", texts)
        logger.info("%s (beam %d, engine %s): BLEU %.2f, %.0f source words/s batched", key, engine.beam, engine.name,
                    result[f"bleu_{key}"], result[f"src_words_per_sec_{key}_batched"])
    result["bleu_signature"] = str(bleu.get_signature())
    if options.extra_refs:
        result["bleu_signature_multiref"] = str(multi.get_signature())
    # p(ŷ): the model's probability of its own greedy output, EOS included, averaged over sentences
    # (the model's own: fairseq's greedy search, whatever the engine)
    greedy = generation.Generator(task, model, beam=1, max_len_a=options.max_len_a, max_len_b=options.max_len_b,
                                  lenpen=options.lenpen)
    log_probs = _greedy_log_probs(greedy, dataset, batches, use_cuda)
    result["p_yhat"] = sum(math.exp(log_probs[i]) for i in range(n)) / n
    nll, ntokens = _gold_nll(task, model, dataset, batches, use_cuda)
    result["ppl"] = math.exp(nll / ntokens)
    result["params"] = sum(p.numel() for p in model.parameters())
    result["params_nonzero"] = sum(int(p.count_nonzero()) for p in model.parameters())
    if options.engine == "ctranslate2":  # its thread count is fixed when it is loaded
        engines = {key: _engine(options, task, model, beam, use_cuda, options.speed.threads)
                   for key, beam in (("greedy", 1), ("beam", options.beam))}
    speeds, speed_n = measure_speed(engines, dataset, src_words, options.speed)
    for key, summary in speeds.items():
        result[f"src_words_per_sec_{key}"] = summary["median"]
        result[f"src_words_per_sec_{key}_runs"] = summary["runs"]
        result[f"src_words_per_sec_{key}_spread"] = summary["spread"]
        result[f"speed_decoded_{key}"] = summary["decoded"]
    result["speed_sentences"] = speed_n
    result["speed_repeats"] = options.speed.repeats
    result["speed_warmup"] = options.speed.warmup
    result["speed_min_seconds"] = options.speed.min_seconds
    result["device"] = torch.cuda.get_device_name() if use_cuda else f"cpu ({platform.processor() or platform.machine()})"
    result["threads"] = options.speed.threads
    result["cpu_count"] = os.cpu_count()
    logger.info("%s: BLEU greedy %.2f, beam %.2f; ppl %.2f; p(y^) %.4f; %d parameters (%d non-zero); "
                "%.0f / %.0f source words/s at batch size 1 (median of %d, spread %.0f%% / %.0f%%)", result["name"],
                result["bleu_greedy"], result["bleu_beam"], result["ppl"], result["p_yhat"], result["params"],
                result["params_nonzero"], result["src_words_per_sec_greedy"], result["src_words_per_sec_beam"],
                options.speed.repeats, 100 * result["src_words_per_sec_greedy_spread"],
                100 * result["src_words_per_sec_beam_spread"])
    return result


def write_result(path, result):
    """The result as a JSON file, written atomically."""
    atomic_write_lines(path, [json.dumps(result, indent=2)])

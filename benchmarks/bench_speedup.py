"""The paper's speed-up at paper sizes: teachers with beam 5 against students decoding greedily.

Kim & Rush (2016) §5 / finding 6: on WMT (50k words) the 4x1000 teacher with beam 5 against the
2x500 and 2x300 students decoding greedily; on IWSLT (25k words) the 2x500 teacher with beam 5
against the 2x100 student. Each model decodes with fairseq's SequenceGenerator and with our
decoder (fairseq_seqkd.deploy: exact float32, and int8), side by side in one run: random weights,
batch size 1 (the paper's setting), every sentence 20 source words and exactly 25 target words
(min_len = max_len, so every model and engine decodes the same number of steps), one warm-up
sentence per model and engine, then R rounds that run the engines one after the other on the same
sentences (A B C A B C ...); medians of the rounds. On the CPU with 1 thread and with all threads,
and on a GPU when there is one (float32 only). int8 runs twice: with each sentence quantised and
encoded on its own (seqkd-translate's default, batch-independent output) and with one activation
scale per batch (``--int8-activations batch``); they differ only at batch sizes above 1
(``--batch-size``, sentences decoded together by every engine). Usage:

    python benchmarks/bench_speedup.py [--repeats 3] [--seconds 2] [--threads 1 0] [--no-gpu] [--batch-size 1]

The number of sentences per model is chosen from the warm-up so that one fairseq run takes about
--seconds (between --min-sentences and --max-sentences), and printed.
"""

import argparse
import statistics
import sys
import time

import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.sequence_generator import SequenceGenerator

import fairseq_seqkd  # noqa: F401  (registers the architectures)
from fairseq_seqkd.deploy.bundle import Bundle
from fairseq_seqkd.deploy.export import from_fairseq
from fairseq_seqkd.deploy.translator import Translator

SOURCE_WORDS, TARGET_WORDS = 20, 25

#: (label, arch, vocabulary, beam): the paper's teachers and students
MODELS = [
    ("teacher 4x1000", "luong_lstm_4x1000", 50000, 5),
    ("student 2x500", "luong_lstm_2x500", 50000, 1),
    ("student 2x300", "luong_lstm_2x300", 50000, 1),
    ("teacher 2x500", "luong_lstm_2x500", 25000, 5),
    ("student 2x100", "luong_lstm_2x100", 25000, 1),
    # not the paper's: a small student with a small vocabulary, whose time is per-step overhead
    ("student 2x100 8k", "luong_lstm_2x100", 8000, 1),
]
#: (student, teacher) pairs whose speed-up is reported, as in the paper
PAIRS = [("student 2x500", "teacher 4x1000"), ("student 2x300", "teacher 4x1000"),
         ("student 2x100", "teacher 2x500")]
PAPER = {"cpu": "greedy 2x500 63.6 vs 4x1000 beam 5 7.9 source words/s (8.1x)",
         "gpu": "greedy 2x500 1051 vs 4x1000 beam 5 102 source words/s (10.3x)"}


class _Dictionaries:
    def __init__(self, vocab):
        d = Dictionary()
        for i in range(vocab - d.nspecial):
            d.add_symbol(f"w{i}")
        self.source_dictionary = self.target_dictionary = d


def build(arch, vocab, seed=0):
    """A fairseq model with random weights and our float and int8 translators of the same weights."""
    task = _Dictionaries(vocab)
    args = argparse.Namespace(arch=arch, criterion="cross_entropy")
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(seed)
    model = ARCH_MODEL_REGISTRY[arch].build_model(args, task).eval()
    ours = {}
    for quantize in (None, "int8"):
        config, weights, src_vocab, tgt_vocab = from_fairseq(model, task.source_dictionary, task.target_dictionary,
                                                             quantize)
        ours["int8" if quantize else "ours"] = Bundle({"model": config}, weights, src_vocab, tgt_vocab)
    return model, task.target_dictionary, ours


class Engines:
    """The decoders of one model at one beam size, each a function of a list of sources."""

    def __init__(self, model, dictionary, bundles, beam, device):
        self.model = model.to(device)
        self.device = device
        self.generator = SequenceGenerator([self.model], dictionary, beam_size=beam, min_len=TARGET_WORDS,
                                           max_len_a=0, max_len_b=TARGET_WORDS)
        self.translators = {}
        for name, loaded in bundles.items():
            if name == "int8":
                if device.type != "cpu":
                    continue
                for activations, label in (("sentence", "int8"), ("batch", "int8 batch")):
                    self.translators[label] = Translator(loaded, beam=beam, min_len=TARGET_WORDS, max_len_a=0,
                                                         max_len_b=TARGET_WORDS, int8_activations=activations)
                continue
            t = Translator(loaded, beam=beam, min_len=TARGET_WORDS, max_len_a=0, max_len_b=TARGET_WORDS)
            t.net.to(device)
            self.translators[name] = t

    @property
    def names(self):
        return ["fairseq", *self.translators]

    def run(self, name, sources, clock=time.perf_counter, batch_size=1):
        """Decode ``sources`` ``batch_size`` at a time; return (seconds by ``clock``, output lengths)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        lengths = []
        batches = [sources[i:i + batch_size] for i in range(0, len(sources), batch_size)]
        sync()
        start = clock()
        with torch.no_grad():
            for batch in batches:  # sources of one length: no padding
                if name == "fairseq":
                    src = torch.tensor(batch, device=self.device)
                    lens = torch.full((len(batch),), len(batch[0]), device=self.device)
                    sample = {"net_input": {"src_tokens": src, "src_lengths": lens}}
                    hyps = self.generator.generate([self.model], sample)
                    lengths += [len(h[0]["tokens"]) - 1 for h in hyps]
                else:
                    lengths += [len(h.tokens) for h in self.translators[name].translate_ids(batch)]
        sync()
        return clock() - start, lengths


def measure(engines, sources, repeats, clock, batch_size=1):
    times = {name: [] for name in engines.names}
    for _ in range(repeats):
        for name in engines.names:
            seconds, lengths = engines.run(name, sources, clock, batch_size)
            assert all(n == TARGET_WORDS for n in lengths), (name, lengths)  # the same work for every engine
            times[name].append(seconds)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of every engine (median reported)")
    p.add_argument("--seconds", type=float, default=2.0, help="aim for fairseq runs of about this long")
    p.add_argument("--min-sentences", type=int, default=2)
    p.add_argument("--max-sentences", type=int, default=40)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 0], help="CPU thread counts (0: all cores)")
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--models", nargs="+", help="labels of MODELS to run (default: all)")
    p.add_argument("--batch-size", type=int, default=1, help="sentences decoded together (the paper: 1)")
    p.add_argument("--cpu-clock", action="store_true",
                   help="time 1-thread CPU runs by this process's CPU time instead of the wall clock (on a host "
                        "whose cores other jobs use)")
    args = p.parse_args(argv)
    models = [m for m in MODELS if not args.models or m[0] in args.models]
    cores = torch.get_num_threads()
    settings = [("cpu", t or cores) for t in args.threads]
    if torch.cuda.is_available() and not args.no_gpu:
        settings.append(("cuda", cores))
    gen = torch.Generator().manual_seed(1)
    print(f"torch {torch.__version__}, {cores} CPU threads available"
          + (f", GPU {torch.cuda.get_device_name()}" if any(d == "cuda" for d, _ in settings) else "")
          + f"; batch size {args.batch_size}, {SOURCE_WORDS} source words and {TARGET_WORDS} target words per "
          f"sentence, median of {args.repeats} rounds", flush=True)
    results = {}
    for label, arch, vocab, beam in models:
        t0 = time.perf_counter()
        model, dictionary, bundles = build(arch, vocab)
        sources = [torch.randint(4, vocab, (SOURCE_WORDS,), generator=gen).tolist() + [dictionary.eos()]
                   for _ in range(args.max_sentences)]
        print(f"{label} ({arch}, {vocab} words, beam {beam}): built in {time.perf_counter() - t0:.0f}s", flush=True)
        for device, threads in settings:
            torch.set_num_threads(threads)
            engines = Engines(model, dictionary, bundles, beam, torch.device(device))
            clock = time.process_time if args.cpu_clock and device == "cpu" and threads == 1 else time.perf_counter
            bs = args.batch_size
            warm = {name: engines.run(name, sources[:bs], clock, bs)[0] / bs for name in engines.names}
            n = int(min(args.max_sentences, max(args.min_sentences, args.seconds / warm["fairseq"])))
            n = max(bs, n // bs * bs)
            times = measure(engines, sources[:n], args.repeats, clock, bs)
            key = (device, threads)
            results.setdefault(key, {})[label] = {name: n * SOURCE_WORDS / statistics.median(t)
                                                  for name, t in times.items()}
            row = results[key][label]
            print(f"  {device} {threads} thread(s), {n} sentences, {clock.__name__}: "
                  + ", ".join(f"{name} {row[name]:.1f} words/s ({row[name] / row['fairseq']:.2f}x)"
                              for name in engines.names)
                  + "; runs (s): " + " | ".join(f"{name} " + " ".join(f"{t:.2f}" for t in times[name])
                                                for name in engines.names), flush=True)
        model.cpu()
        del model, bundles
    report(results, models, args.batch_size)


def report(results, models, batch_size=1):
    print()
    for (device, threads), rows in results.items():
        where = f"{device.upper()}, {threads} thread(s)" if device == "cpu" else "GPU"
        print(f"### {where}: source words/s (batch size {batch_size}); paper (batch size 1): "
              f"{PAPER['gpu' if device == 'cuda' else 'cpu']}")
        print()
        print("| model | beam | fairseq | ours (float32, exact) | ours (int8) | ours (int8, batch scales) |")
        print("|---|---|---|---|---|---|")
        for label, arch, vocab, beam in models:
            if label not in rows:
                continue
            r = rows[label]
            int8 = [f"{r[k]:.1f} ({r[k] / r['fairseq']:.1f}x)" if k in r else "-" for k in ("int8", "int8 batch")]
            print(f"| {label.split(' 8k')[0]} ({vocab // 1000}k words) | {beam} | {r['fairseq']:.1f} | "
                  f"{r['ours']:.1f} ({r['ours'] / r['fairseq']:.2f}x) | {int8[0]} | {int8[1]} |")
        print()
        print("| speed-up, student greedy vs teacher beam 5 | both fairseq | student ours (float32) "
              "| student ours (int8) |")
        print("|---|---|---|---|")
        for student, teacher in PAIRS:
            if student in rows and teacher in rows:
                s, t = rows[student], rows[teacher]["fairseq"]
                int8 = f"{s['int8'] / t:.1f}x" if "int8" in s else "-"
                print(f"| {student} vs {teacher} | {s['fairseq'] / t:.1f}x | {s['ours'] / t:.1f}x | {int8} |")
        print()


if __name__ == "__main__":
    sys.exit(main())

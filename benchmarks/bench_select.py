"""Seq-Inter selection speed: seqkd-select vs the best plain sacrebleu loop a user would write.

The baseline uses one sacrebleu ``BLEU`` object with ``sentence_bleu``'s
settings and counts each reference's n-grams once per sentence (sacrebleu's
own reference statistics), then scores every hypothesis against them with
sacrebleu's own segment statistics and score: the same floats as
``sacrebleu.sentence_bleu``, without recounting the reference per hypothesis.
Both sides read the same K-best lists, remove subwords the same way, pick the
hypothesis with the highest sentence BLEU per sentence (earliest on ties) and
write the chosen lines; we time each end to end (reading and writing
included) and the selection alone, check that the choices are identical, and
report hypotheses/s for 1 and 2 worker processes (started as seqkd-select
starts them).

    python benchmarks/bench_select.py --kbest FILE.kbest      # real K-best lists
    python benchmarks/bench_select.py --sentences 1000 --nbest 35  # synthetic lists from Bible-like text
"""

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time

import sacrebleu
from sacrebleu.metrics.bleu import BLEU

from fairseq_seqkd import selection
from fairseq_seqkd.cli.select import main as select_main
from fairseq_seqkd.kbest import Sentence, check_complete, read_kbest, write_kbest_file
from fairseq_seqkd.subwords import remove_subwords
from fairseq_seqkd.textio import atomic_write_lines

WORDS = ("and the LORD said unto Moses , saying : Speak to the children of Israel that they bring me an "
         "offering of every man whose heart is willing ; God created heaven earth . light darkness day "
         "night , water land “ ” ’ s 12 3:4").split()


def synthetic(n, k, seed=0):
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(8, 30))]
        hyps = []
        for _ in range(k):
            h = ref[:]
            for _ in range(rng.randint(1, 8)):
                op = rng.random()
                if op < 0.4:
                    h[rng.randrange(len(h))] = rng.choice(WORDS)
                elif op < 0.7 and len(h) > 1:
                    del h[rng.randrange(len(h))]
                else:
                    h.insert(rng.randrange(len(h) + 1), rng.choice(WORDS))
            hyps.append(h)
        sp = lambda ws: " ".join("\u2581" + w for w in ws)  # sentencepiece-like pieces
        sentences.append(Sentence(i, f"source {i}", sp(ref), [(-0.1 * r, sp(h)) for r, h in enumerate(hyps)]))
    return sentences


def baseline(path, out_src, out_tgt, remove_bpe):
    """The best plain sacrebleu loop: one BLEU object, each reference's statistics counted once."""
    sentences = check_complete(path, read_kbest(path), need_reference=True)
    t0 = time.perf_counter()
    metric = BLEU(effective_order=True)  # what sacrebleu.sentence_bleu builds for every call
    prepare = metric._preprocess_segment
    chosen = []
    for s in sentences:
        ref = metric._extract_reference_info([prepare(remove_subwords(s.reference, remove_bpe))])
        scores = [metric._compute_score_from_stats(
                      metric._compute_segment_statistics(prepare(remove_subwords(h, remove_bpe)), ref)).score
                  for _, h in s.hyps]
        chosen.append(scores.index(max(scores)))
    select_time = time.perf_counter() - t0
    atomic_write_lines(out_src, [s.source for s in sentences])
    atomic_write_lines(out_tgt, [s.hyps[c][1] for s, c in zip(sentences, chosen)])
    return chosen, select_time


def timed(fn):
    gc.collect()  # start each run from the same heap: garbage of the previous run is not charged to this one
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kbest", help="a K-best file or fairseq-generate output (default: synthetic lists)")
    p.add_argument("--sentences", type=int, default=1000)
    p.add_argument("--nbest", type=int, default=35)
    p.add_argument("--remove-bpe", default="sentencepiece")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="seqkd-select --workers values to time")
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp()
    path = args.kbest
    if path is None:
        path = os.path.join(tmp, "synthetic.kbest")
        write_kbest_file(path, synthetic(args.sentences, args.nbest), args.nbest)
    table = read_kbest(path)
    n_sent, n_hyp = len(table), sum(len(s.hyps) for s in table.values())
    check = table[min(table)]  # the baseline's scores are sacrebleu.sentence_bleu's, bit for bit
    metric = BLEU(effective_order=True)
    ref_info = metric._extract_reference_info([metric._preprocess_segment(remove_subwords(check.reference,
                                                                                          args.remove_bpe))])
    for _, h in check.hyps:
        h = remove_subwords(h, args.remove_bpe)
        assert metric._compute_score_from_stats(metric._compute_segment_statistics(
            metric._preprocess_segment(h), ref_info)).score == sacrebleu.sentence_bleu(
            h, [remove_subwords(check.reference, args.remove_bpe)]).score
    out = lambda name: os.path.join(tmp, name)
    base_runs, base_select = [], []
    ours = {workers: [] for workers in args.workers}
    for _ in range(args.repeats):
        (base_chosen, sel), total = timed(lambda: baseline(path, out("b.src"), out("b.tgt"), args.remove_bpe))
        base_runs.append(total)
        base_select.append(sel)
        for workers in args.workers:
            argv = [path, "--out-src", out(f"o{workers}.src"), "--out-tgt", out(f"o{workers}.tgt"), "--remove-bpe",
                    args.remove_bpe, "--workers", str(workers)]
            selection._SCORER = None  # every run starts with cold caches
            # as seqkd-select starts its workers (this process runs no torch either)
            summary, total = timed(lambda: select_main(argv, start_method="fork"))
            chosen = summary.ranks
            ours[workers].append(total)
            assert chosen == base_chosen, "different choices!"
    b = statistics.median(base_runs)
    print(f"{'real' if args.kbest else 'synthetic'} K-best lists: {n_sent} sentences, {n_hyp} hypotheses "
          f"({path}); python {sys.version.split()[0]}, sacrebleu {sacrebleu.__version__}, {os.cpu_count()} CPUs")
    print(f"  sacrebleu loop (one BLEU object, reference statistics once per sentence): {b:.2f}s end to end ({n_hyp / b:,.0f} hypotheses/s), "
          f"selection alone {statistics.median(base_select):.2f}s")
    for workers, runs in ours.items():
        m = statistics.median(runs)
        print(f"  seqkd-select --workers {workers}: {m:.2f}s end to end ({n_hyp / m:,.0f} hypotheses/s), "
              f"speed-up {b / m:.1f}x; identical choices")


if __name__ == "__main__":
    main()

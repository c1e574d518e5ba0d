"""seqkd-topk: the teacher's top-k words at every target position of a split, on disk, for word_kd.

    seqkd-topk DATA --path TEACHER.pt --k K --out STORE [--subset train]
               [--max-tokens N | --batch-size N] [--num-shards N --shard-id I] [--resume] [--cpu] [--fp16]
    seqkd-topk --merge --out STORE --num-shards N

Teacher forced on the gold targets, in eval mode, the teacher's K best words
and their log-probabilities (T = 1, float16) at every target token (EOS
included) go into the folder STORE, which ``fairseq-train --criterion word_kd
--kd-topk-store STORE`` memory-maps instead of running the teacher (see
docs/topk_store.md).

Batches are fixed once for the whole split, shard I of N computes batches I,
I+N, ... into STORE.shard-I-of-N/ and commits each finished batch in its
journal: a killed run continues with ``--resume``, and shards merged with
``--merge`` give the same bytes as one uninterrupted run. With one shard the
store is published at the end of the run.
"""

from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.topk_store import TopKOptions, build_store


def get_parser():
    p = argument_parser("seqkd-topk", __doc__)
    p.add_argument("data", nargs="?", help="fairseq binary data folder (as for fairseq-train)")
    p.add_argument("--path", help="the teacher's fairseq checkpoint")
    p.add_argument("--k", type=int, default=0, help="words kept per target position (word_kd's --kd-topk)")
    p.add_argument("--out", required=True, help="the store (a folder)")
    p.add_argument("--subset", default="train", help="the split the student trains on")
    p.add_argument("--source-lang", help="source language (default: inferred from DATA)")
    p.add_argument("--target-lang", help="target language (default: inferred from DATA)")
    p.add_argument("--max-tokens", type=int, default=None, help="batch size in tokens: sentences x the longest max(source, target) length, </s> included (fairseq's count); a longer sentence gets a batch of its own")
    p.add_argument("--batch-size", type=int, default=None, help="batch size in sentences (default 64)")
    p.add_argument("--num-shards", type=int, default=1, help="split the work into this many shards")
    p.add_argument("--shard-id", type=int, default=0, help="the shard this process computes (0-based)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted shard from its journal")
    p.add_argument("--merge", action="store_true", help="merge the finished shards into the store")
    p.add_argument("--stop-after-batches", type=int, default=0,
                   help="stop after this many batches (continue later with --resume), e.g. for time-limited jobs")
    p.add_argument("--cpu", action="store_true", help="run the teacher on the CPU even if a GPU is available")
    p.add_argument("--fp16", action="store_true", help="run the teacher in half precision (GPU)")
    return p


def main(argv=None):
    """Parse the arguments and run :func:`fairseq_seqkd.topk_store.build_store`."""
    return build_store(TopKOptions(**vars(get_parser().parse_args(argv))))


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()

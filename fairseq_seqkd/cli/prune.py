"""seqkd-prune: magnitude pruning of a fairseq checkpoint (Kim & Rush 2016, §6).

    seqkd-prune IN.pt OUT.pt --ratio R [--scheme class-blind|class-uniform] [--scope all|no-embeddings]
                [--export-sparse SPARSE.pt]
    seqkd-prune IN.pt --report                  # parameters and non-zeros per tensor group
    seqkd-prune --densify SPARSE.pt OUT.pt      # a sparse export back to an ordinary checkpoint

Zeroes the R fraction of weights with the smallest magnitudes (class-blind:
exactly round(R*N) of all N weights in matrices and embeddings; class-uniform:
R of each tensor; biases untouched; ties pruned in state_dict order). OUT.pt
is an ordinary fairseq checkpoint (fairseq-generate loads it) that carries
its mask: retrain it with ``fairseq-train --task seqkd_translation
--finetune-from-model OUT.pt ...`` and the pruned weights stay zero.
``--export-sparse`` writes only the kept weights and their positions.
"""

import logging
import os

import torch

from fairseq_seqkd import pruning
from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.teacher import load_checkpoint_state
from fairseq_seqkd.textio import atomic_open, fail

logger = logging.getLogger("seqkd-prune")
SPARSE_FORMAT = "seqkd-sparse-v1"
TASK_KEY = "SeqKDTranslationTask"  # where fairseq keeps our task's checkpoint dict (extra_state)


def get_parser():
    p = argument_parser("seqkd-prune", __doc__)
    p.add_argument("input", help="a fairseq checkpoint (or, with --densify, a sparse export)")
    p.add_argument("output", nargs="?", help="the pruned checkpoint to write")
    p.add_argument("--ratio", type=float, help="fraction of the weights to prune, in [0, 1)")
    p.add_argument("--scheme", choices=pruning.SCHEMES, default="class-blind",
                   help="class-blind: one ranking over all weights; class-uniform: the same fraction of each tensor")
    p.add_argument("--scope", choices=pruning.SCOPES, default="all", help="prune embeddings too (all), or not")
    p.add_argument("--export-sparse", metavar="FILE", help="also write the kept weights as (indices, values)")
    p.add_argument("--densify", action="store_true", help="turn a sparse export (input) into a checkpoint (output)")
    p.add_argument("--report", action="store_true", help="only print the parameter counts of the input")
    return p


def report_lines(state):
    rows = pruning.stats(state)
    lines = [f"{'group':18s} {'parameters':>12s} {'non-zero':>12s} {'pruned':>7s}"]
    for group, (total, nonzero) in rows.items():
        pruned = 100 * (1 - nonzero / total) if total else 0.0
        lines.append(f"{group:18s} {total:12,d} {nonzero:12,d} {pruned:6.1f}%")
    return lines


def save(state, path):
    """Write atomically, with ``cfg`` as plain containers as fairseq's trainer saves it
    (fairseq's loader turns it into an OmegaConf object, which torch's safe loading refuses)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(state.get("cfg")):
        state["cfg"] = OmegaConf.to_container(state["cfg"], resolve=True, enum_to_str=True)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def prune(args):
    if args.densify:
        if not args.output:
            fail("--densify needs SPARSE.pt OUT.pt")
        check_output(args.input, args.output)
        try:
            sparse = torch.load(args.input, map_location="cpu")
        except Exception as e:
            fail(f"{args.input}: not a sparse export ({type(e).__name__})")
        if not isinstance(sparse, dict) or sparse.get("format") != SPARSE_FORMAT:
            fail(f"{args.input}: not a sparse export written by seqkd-prune --export-sparse")
        state = sparse["checkpoint"]
        state["model"] = pruning.from_sparse(sparse["model"])
        save(state, args.output)
        logger.info("wrote %s (dense) from %s", args.output, args.input)
        return state
    state = load_checkpoint_state(args.input)
    if args.report:
        for line in report_lines(state["model"]):
            print(line)
        return state
    if args.ratio is None or not args.output:
        fail("give IN.pt OUT.pt --ratio R (or --report, or --densify)")
    if not 0 <= args.ratio < 1:
        fail(f"--ratio {args.ratio}: must be in [0, 1)")
    check_output(args.input, args.output)
    masks = pruning.magnitude_masks(state["model"], args.ratio, args.scheme, args.scope)
    pruning.apply_masks(state["model"].items(), masks)
    extra = state.setdefault("extra_state", {}) or {}
    state["extra_state"] = extra
    extra[TASK_KEY] = {"prune_masks": {name: pruning.pack(m) for name, m in masks.items()},
                       "prune": {"ratio": args.ratio, "scheme": args.scheme, "scope": args.scope}}
    save(state, args.output)
    logger.info("pruned %s -> %s: ratio %s, %s, scope %s", args.input, args.output, args.ratio, args.scheme,
                args.scope)
    for line in report_lines(state["model"]):
        logger.info("%s", line)
    if args.export_sparse:
        sparse = {"format": SPARSE_FORMAT, "model": pruning.to_sparse(state["model"], masks),
                  "checkpoint": {k: v for k, v in state.items() if k not in ("model", "last_optimizer_state")}}
        save(sparse, args.export_sparse)
        logger.info("sparse export %s: %.1f MB (dense checkpoint without optimizer state: %.1f MB)",
                    args.export_sparse, os.path.getsize(args.export_sparse) / 2**20,
                    sum(t.numel() * t.element_size() for t in state["model"].values()) / 2**20)
    return state


def check_output(inp, out):
    if os.path.exists(out) and os.path.samefile(inp, out) or os.path.abspath(inp) == os.path.abspath(out):
        fail(f"{out}: the output must not be the input")


def cli_main(argv=None):
    setup_logging()
    prune(get_parser().parse_args(argv))


if __name__ == "__main__":
    cli_main()

"""seqkd-prune: magnitude pruning of a fairseq checkpoint (Kim & Rush 2016, §6).

    seqkd-prune IN.pt OUT.pt --ratio R [--scheme class-blind|class-uniform] [--scope all|no-embeddings]
                [--export-sparse SPARSE.pt]
    seqkd-prune IN.pt --report                  # parameters and non-zeros per tensor group
    seqkd-prune --densify SPARSE.pt OUT.pt      # a sparse export back to an ordinary checkpoint

Zeroes the R fraction of weights with the smallest magnitudes (class-blind:
exactly round(R*N) of all N weights in matrices and embeddings; class-uniform:
R of each tensor; biases untouched; ties pruned in state_dict order; a tied
parameter, e.g. embeddings shared with --share-all-embeddings, counts and is
masked once, under the name the model's named_parameters() gives it). OUT.pt
is an ordinary fairseq checkpoint (fairseq-generate loads it) that carries
its mask: retrain it with ``fairseq-train --task seqkd_translation
--finetune-from-model OUT.pt ...`` and the pruned weights stay zero.
``--export-sparse`` writes only the kept weights and their positions.
"""

from fairseq_seqkd import pruning
from fairseq_seqkd.cli import argument_parser, run_script
from fairseq_seqkd.errors import SeqKDError


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


def main(argv=None):
    """Parse the arguments and prune, densify or report (:mod:`fairseq_seqkd.pruning`); return the state."""
    args = get_parser().parse_args(argv)
    if args.densify:
        if not args.output:
            raise SeqKDError("--densify needs SPARSE.pt OUT.pt")
        return pruning.densify(args.input, args.output)
    if args.report:
        from fairseq_seqkd.checkpoints import load_checkpoint_state

        state = load_checkpoint_state(args.input)
        for line in pruning.report_lines(state["model"], pruning.parameter_names(state, args.input)):
            print(line)
        return state
    if args.ratio is None or not args.output:
        raise SeqKDError("give IN.pt OUT.pt --ratio R (or --report, or --densify)")
    return pruning.prune_checkpoint(args.input, args.output, args.ratio, args.scheme, args.scope,
                                    args.export_sparse)


def cli_main(argv=None):
    run_script(main, argv)


if __name__ == "__main__":
    cli_main()

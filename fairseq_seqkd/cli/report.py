"""seqkd-report: seqkd-eval JSONs -> a table shaped like the paper's Table 1, its findings checked, a plot.

    seqkd-report RUN_DIR [--eval-dir RUN_DIR/eval] [--teacher NAME] [--baseline NAME] [--title TEXT]
    seqkd-report OUT_DIR --runs RUN_DIR RUN_DIR [...] [--teacher NAME] [--baseline NAME] [--seqkd NAME]
                 [--best NAME] [--title TEXT]

One run: reads every ``*.json`` of the eval folder (rows in file-name order) and writes
RUN_DIR/results.md (the table; ΔK: BLEU difference to the baseline student; speed-up: greedy
decoding vs the teacher's beam search, as the paper compares them, printed only where the two speeds
differ by more than the sum of their spreads (max − min of seqkd-eval's repeated measurements), else
"~1x (within spread)"; the paper's findings checked), RUN_DIR/results.json (the rows) and
RUN_DIR/results.png (greedy and beam BLEU and p(ŷ) per model).

Several runs (--runs; one per seed, each with RUN_DIR/eval/*.json, labelled by the folder's name,
rows matched by name): OUT_DIR/results.md with each row's mean ± sd over the runs, each student's
paired difference to the baseline of the same run with the p-value of a two-sided paired t-test
(scipy.stats.ttest_rel, n = the runs), and how many runs each finding holds in; OUT_DIR/results.json
with every run's rows, the aggregates, the p-values and the findings; OUT_DIR/results.png with error
bars (sd) and every run's value as a dot.

The teacher and the baseline are rows named exactly --teacher and --baseline (an empty name: no such
row); without them, the one row named "Teacher" or "Teacher ARCH" ("Baseline", "Baseline ARCH": the
recipes' names, e.g. "Teacher 1x256"); anything else is refused, never guessed from a part of a name.
Finding 4 holds where --best is within 0.5 BLEU (greedy) of the best of the paper's student rows
(the baseline, Word-KD, --seqkd, Baseline + Seq-Inter, Seq-KD + Word-KD, --best); other rows, such
as pruned ones, are reported but not counted.
"""


from fairseq_seqkd import report
from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import fail



def get_parser():
    p = argument_parser("seqkd-report", __doc__)
    p.add_argument("out_dir", metavar="RUN_DIR|OUT_DIR",
                   help="one run's folder (results are written here), or with --runs where the results go")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="aggregate these runs (at least 2)")
    p.add_argument("--eval-dir", help="one run: folder of seqkd-eval JSON files (default: RUN_DIR/eval)")
    p.add_argument("--teacher", help="exact name of the teacher row; '' for none (default: the one row named "
                                     "'Teacher' or 'Teacher ARCH')")
    p.add_argument("--baseline", help="exact name of the baseline student's row; '' for none (default: the one row "
                                      "named 'Baseline' or 'Baseline ARCH')")
    p.add_argument("--seqkd", default=report.SEQKD,
                   help="name of the Seq-KD row of findings 1-3 (default: %(default)s)")
    p.add_argument("--best", default=report.BEST, help="name of the combination expected to be among the best "
                                                       "students (finding 4; default: %(default)s)")
    p.add_argument("--title", default="", help="a line printed above the table")
    return p


def cli_main(argv=None):
    setup_logging()
    args = get_parser().parse_args(argv)
    names = dict(teacher=args.teacher, baseline=args.baseline, seqkd=args.seqkd, best=args.best, title=args.title)
    try:
        if args.runs is None:
            lines = report.single_run_report(args.out_dir, args.eval_dir, **names)
        elif args.eval_dir:
            fail("--eval-dir is for one run; with --runs each run's JSONs are read from RUN_DIR/eval")
        else:
            lines = report.multi_run_report(args.out_dir, args.runs, **names)
    except SeqKDError as e:
        fail(str(e))
    for line in lines:
        print(line)


if __name__ == "__main__":
    cli_main()

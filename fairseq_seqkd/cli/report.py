"""seqkd-report: seqkd-eval JSONs -> a table shaped like the paper's Table 1, a JSON list and a plot.

    seqkd-report RUN_DIR [--eval-dir RUN_DIR/eval] [--teacher NAME] [--baseline NAME]

Reads every ``*.json`` of the eval folder (rows in file-name order) and writes
``RUN_DIR/results.md``, ``RUN_DIR/results.json`` (the rows: eval keys plus
``name``) and ``RUN_DIR/results.png`` (greedy BLEU against decoding speed,
point size = non-zero parameters). ΔK=1 and ΔK=5 are BLEU differences to the
baseline student; the speed-up compares greedy decoding (batch size 1) with
the teacher's beam search, as the paper does.
"""

import glob
import json
import logging
import os

from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.textio import atomic_open, atomic_write_lines, fail

logger = logging.getLogger("seqkd-report")
REQUIRED = ("name", "bleu_greedy", "bleu_beam", "beam", "ppl", "p_yhat", "params", "params_nonzero",
            "src_words_per_sec_greedy", "src_words_per_sec_beam")


def get_parser():
    p = argument_parser("seqkd-report", __doc__)
    p.add_argument("run_dir", help="the run's folder (results are written here)")
    p.add_argument("--eval-dir", help="folder of seqkd-eval JSON files (default: RUN_DIR/eval)")
    p.add_argument("--teacher", help="name of the teacher row (default: the row whose name contains 'teacher')")
    p.add_argument("--baseline", help="name of the baseline student (default: the row whose name contains 'baseline')")
    p.add_argument("--title", default="", help="a line printed above the table")
    return p


def load_rows(eval_dir):
    rows = []
    paths = sorted(glob.glob(os.path.join(eval_dir, "*.json")))
    if not paths:
        fail(f"{eval_dir}: no seqkd-eval JSON files")
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                row = json.load(f)
        except json.JSONDecodeError as e:
            fail(f"{path}:{e.lineno}: not JSON ({e.msg})")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            fail(f"{path}: not a seqkd-eval result (missing {', '.join(missing)})")
        rows.append(row)
    return rows


def find(rows, name, word):
    if name:
        match = [r for r in rows if r["name"] == name]
        if not match:
            fail(f"no row named {name!r} (rows: {', '.join(r['name'] for r in rows)})")
        return match[0]
    match = [r for r in rows if word in r["name"].lower()]
    return match[0] if match else None


def millions(n):
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def table(rows, teacher, baseline):
    k = rows[0]["beam"]
    head = (f"| model | params (non-zero) | BLEU K=1 | ΔK=1 | BLEU K={k} | ΔK={k} | PPL | p(ŷ) | "
            f"words/s K=1 | words/s K={k} | speed-up |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        d1 = f"{r['bleu_greedy'] - baseline['bleu_greedy']:+.1f}" if baseline and r is not baseline else ""
        d5 = f"{r['bleu_beam'] - baseline['bleu_beam']:+.1f}" if baseline and r is not baseline else ""
        speed = (f"{r['src_words_per_sec_greedy'] / teacher['src_words_per_sec_beam']:.1f}x"
                 if teacher else "")
        params = millions(r["params"]) + (f" ({millions(r['params_nonzero'])})"
                                          if r["params_nonzero"] < 0.99 * r["params"] else "")
        lines.append(f"| {r['name']} | {params} | {r['bleu_greedy']:.1f} | {d1} | {r['bleu_beam']:.1f} | {d5} | "
                     f"{r['ppl']:.1f} | {100 * r['p_yhat']:.1f}% | {r['src_words_per_sec_greedy']:.0f} | "
                     f"{r['src_words_per_sec_beam']:.0f} | {speed} |")
    return lines


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    biggest = max(r["params_nonzero"] for r in rows)
    for i, r in enumerate(rows):
        size = 40 + 800 * r["params_nonzero"] / biggest
        ax.scatter(r["src_words_per_sec_greedy"], r["bleu_greedy"], s=size, alpha=0.6)
        # labels alternate above and below their points, so that neighbours do not overwrite each other
        ax.annotate(r["name"], (r["src_words_per_sec_greedy"], r["bleu_greedy"]), textcoords="offset points",
                    xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("greedy decoding speed (source words/s, batch size 1, log scale)")
    ax.set_ylabel("BLEU, greedy decoding (K=1)")
    ax.set_title("BLEU vs speed; point size = non-zero parameters")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def report(args):
    rows = load_rows(args.eval_dir or os.path.join(args.run_dir, "eval"))
    teacher = find(rows, args.teacher, "teacher")
    baseline = find(rows, args.baseline, "baseline")
    first = rows[0]
    notes = [args.title] if args.title else []
    notes.append(f"{first['subset']} set, {first['sentences']} sentences; BLEU: sacrebleu "
                 f"({first.get('bleu_signature', '')}); speed: source words/s at batch size 1 on "
                 f"{first.get('device', '?')}, {first.get('threads', '?')} threads; ΔK: vs "
                 f"{baseline['name'] if baseline else '(no baseline row)'}; speed-up: greedy words/s vs "
                 f"{teacher['name'] + ' with beam search' if teacher else '(no teacher row)'}.")
    lines = table(rows, teacher, baseline) + [""] + notes
    atomic_write_lines(os.path.join(args.run_dir, "results.md"), lines)
    atomic_write_lines(os.path.join(args.run_dir, "results.json"), [json.dumps(rows, indent=2)])
    plot(rows, os.path.join(args.run_dir, "results.png"))
    logger.info("wrote %s/results.{md,json,png} (%d models)", args.run_dir, len(rows))
    return lines


def cli_main(argv=None):
    setup_logging()
    for line in report(get_parser().parse_args(argv)):
        print(line)


if __name__ == "__main__":
    cli_main()

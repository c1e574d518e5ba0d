"""Reports of seqkd-eval results: one run's table, several runs' mean ± sd, the paper's findings, a plot.

A run is a folder of seqkd-eval JSON files, one per model (a "row"). One run gives a table shaped like
Table 1 of Kim & Rush (2016); several runs of the same study (one per seed) give each row's mean and
sample standard deviation (n - 1) and each student's paired difference to the baseline of the same run, with
the two-sided p-value of a paired t-test (:func:`paired_p_value`). Both check the findings of Table 1 in every
run (:func:`check_findings`). The teacher and the baseline are rows picked by their exact names (:func:`find`),
never by a part of a name. Nothing is written until everything has been read and checked, and every file is
written atomically.
"""

import glob
import io
import json
import logging
import os
import re
import statistics

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open, atomic_write_lines

logger = logging.getLogger(__name__)

NUMBERS = ("bleu_greedy", "bleu_beam", "beam", "ppl", "p_yhat", "params", "params_nonzero",
           "src_words_per_sec_greedy", "src_words_per_sec_beam", "sentences", "threads")
REQUIRED = ("name", *NUMBERS, "subset", "bleu_signature", "device")
METRICS = ("bleu_greedy", "bleu_beam", "beam_gain", "ppl", "p_yhat", "params_nonzero")  # aggregated per row
PAIRED = METRICS[:-1]  # paired differences of the students to the baseline
SEQKD, BEST = "Seq-KD", "Seq-KD + Seq-Inter + Word-KD"
# the student rows of the paper's Table 1 besides the baseline, SEQKD and BEST (finding 4 compares only these)
PAPER_STUDENTS = ("Word-KD", "Baseline + Seq-Inter", "Seq-KD + Word-KD")
WITHIN = 0.5  # finding 4: BLEU (greedy) the combination may be behind the best of the paper's students


def load_rows(eval_dir):
    """The seqkd-eval results of a folder's ``*.json`` files, in file-name order."""
    paths = sorted(glob.glob(os.path.join(eval_dir, "*.json")))
    if not paths:
        raise SeqKDError(f"{eval_dir}: no seqkd-eval JSON files")
    rows = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                row = json.load(f)
        except json.JSONDecodeError as e:
            raise SeqKDError(f"{path}:{e.lineno}: not JSON ({e.msg})") from None
        except UnicodeDecodeError as e:
            raise SeqKDError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise SeqKDError(f"{path}: {e.strerror}") from None
        if not isinstance(row, dict):
            raise SeqKDError(f"{path}: not a seqkd-eval result (not a JSON object)")
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise SeqKDError(f"{path}: not a seqkd-eval result (missing {', '.join(missing)})")
        for key in NUMBERS:
            if isinstance(row[key], bool) or not isinstance(row[key], (int, float)):
                raise SeqKDError(f"{path}: {key} is {row[key]!r}, not a number")
        rows.append(row)
    return rows


def find(rows, name, role):
    """The name of the ``role`` row ("teacher" or "baseline"): the row called exactly ``name``; None if
    ``name`` is "" (there is no such row); without ``name``, the one row called "Teacher" or "Teacher ARCH"
    ("Baseline ...": the recipes' names, e.g. "Teacher 1x256"). No such row, or several, is an error: a
    row is never picked by a part of its name ("Baseline + Seq-Inter" is not a baseline)."""
    names = list(dict.fromkeys(r["name"] for r in rows))
    if name == "":
        return None
    if name is not None:
        if name not in names:
            raise SeqKDError(f"no row named {name!r} (rows: {', '.join(names)})")
        return name
    word = role.capitalize()
    matches = [n for n in names if re.fullmatch(rf"{word}( \S+)?", n)]
    if not matches:
        raise SeqKDError(f"no row named {word!r} or '{word} ARCH' (rows: {', '.join(names)}): name the {role} "
                         f"row with --{role} NAME")
    if len(matches) > 1:
        raise SeqKDError(f"{len(matches)} rows could be the {role} ({', '.join(matches)}): name it with "
                         f"--{role} NAME")
    return matches[0]


def value(row, metric):
    """A row's value of a metric; ``beam_gain`` is beam-search BLEU minus greedy BLEU."""
    return row["bleu_beam"] - row["bleu_greedy"] if metric == "beam_gain" else row[metric]


def millions(n):
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def spread(row, key):
    """The spread of a row's words/s (``key``: greedy or beam): max − min of seqkd-eval's repeated
    measurements of it, which seqkd-eval records relative to their median (``src_words_per_sec_KEY_spread``);
    None if it was not recorded or measured only once."""
    relative, repeats = row.get(f"src_words_per_sec_{key}_spread"), row.get("speed_repeats", 2)
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (relative, repeats)) or repeats < 2:
        return None
    return relative * row[f"src_words_per_sec_{key}"]


def speed_up(row, teacher):
    """A row's greedy words/s against the teacher row's beam-search words/s: "2.4x" where the two differ by more
    than the sum of their spreads (:func:`spread`), else "~1x (within spread)"."""
    greedy, beam = row["src_words_per_sec_greedy"], teacher["src_words_per_sec_beam"]
    ratio = f"{greedy / beam:.1f}x"
    spreads = spread(row, "greedy"), spread(teacher, "beam")
    if None in spreads:
        return "n/a (measured once)"
    return ratio if abs(greedy - beam) > sum(spreads) else "~1x (within spread)"


def speed_note(rows):
    """The footnote's definition of when a speed-up is printed."""
    repeats = {r.get("speed_repeats") for r in rows}
    count = f"its {repeats.pop()} " if len(repeats) == 1 and None not in repeats else "its "
    return ("A speed-up is printed only where the two speeds differ by more than the sum of their spreads, else "
            f"~1x (within spread); a speed's spread is max − min of {count}repeated measurements (seqkd-eval's "
            "src_words_per_sec_*_spread × the median).")


def table(rows, teacher, baseline):
    """One run's table: the columns of the paper's Table 1 (ΔK: BLEU difference to the baseline;
    speed-up: greedy words/s against the teacher's beam search, as the paper compares them, where the
    two differ by more than their spreads: :func:`speed_up`)."""
    k = rows[0]["beam"]
    by_name = {r["name"]: r for r in rows}
    base, teach = by_name.get(baseline), by_name.get(teacher)
    head = (f"| model | params (non-zero) | BLEU K=1 | ΔK=1 | BLEU K={k} | ΔK={k} | PPL | p(ŷ) | "
            f"words/s K=1 | words/s K={k} | speed-up |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        d1 = f"{r['bleu_greedy'] - base['bleu_greedy']:+.1f}" if base and r is not base else ""
        d5 = f"{r['bleu_beam'] - base['bleu_beam']:+.1f}" if base and r is not base else ""
        speed = speed_up(r, teach) if teach else ""
        params = millions(r["params"]) + (f" ({millions(r['params_nonzero'])})"
                                          if r["params_nonzero"] < 0.99 * r["params"] else "")
        lines.append(f"| {r['name']} | {params} | {r['bleu_greedy']:.1f} | {d1} | {r['bleu_beam']:.1f} | {d5} | "
                     f"{r['ppl']:.1f} | {100 * r['p_yhat']:.1f}% | {r['src_words_per_sec_greedy']:.0f} | "
                     f"{r['src_words_per_sec_beam']:.0f} | {speed} |")
    return lines


def setting(row):
    """What a row was evaluated on: rows of several runs must share it."""
    return f"the {row['subset']} set ({row['sentences']} sentences) with beam {row['beam']}"


def load_runs(run_dirs):
    """{label: {row name: row}} of several runs, checked to hold the same rows, evaluated on the same test
    set with the same beam. A run's label is its folder's path below the folder common to all runs:
    ``seed-1`` for ``study/seed-1``, ``seed-1/valid`` for ``study/seed-1/valid``."""
    if len(run_dirs) < 2:
        raise SeqKDError(f"aggregating needs at least 2 runs, got {len(run_dirs)}: {' '.join(run_dirs)}")
    paths = [os.path.abspath(folder) for folder in run_dirs]
    common = os.path.commonpath(paths)
    runs, folders = {}, {}
    for folder, path in zip(run_dirs, paths):
        label = os.path.relpath(path, common) if path != common else os.path.basename(path)
        if label in runs:
            raise SeqKDError(f"{folder}: the same run twice")
        runs[label], folders[label] = {}, folder
        for row in load_rows(os.path.join(folder, "eval")):
            if row["name"] in runs[label]:
                raise SeqKDError(f"{folder}: two rows named {row['name']!r}")
            runs[label][row["name"]] = row
    first_label, first = next(iter(runs.items()))
    reference = next(iter(first.values()))
    for label, rows in runs.items():
        missing = [n for n in first if n not in rows]
        extra = [n for n in rows if n not in first]
        if missing or extra:
            raise SeqKDError(f"{folders[label]}: not the rows of {folders[first_label]} (missing: "
                             f"{', '.join(missing) or 'none'}; extra: {', '.join(extra) or 'none'})")
        for row in rows.values():
            if setting(row) != setting(reference):
                raise SeqKDError(f"{folders[label]}: {row['name']!r} was evaluated on {setting(row)}, but "
                                 f"{reference['name']!r} of {folders[first_label]} on {setting(reference)}")
    return runs


def pm(stats, scale=1, fmt=".1f"):
    """'mean ± sd' of a summary (``fmt`` "+.1f" signs the mean)."""
    return f"{scale * stats['mean']:{fmt}} ± {scale * stats['sd']:{fmt.lstrip('+')}}"


def summary(values):
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values), "n": len(values), "values": values}


def paired_p_value(a, b):
    """The two-sided p-value of a paired t-test of ``a`` against ``b`` (``scipy.stats.ttest_rel``; pairs
    a[i], b[i]); None with fewer than 2 pairs or no variance of the differences (the same difference in every
    pair, up to rounding), where the test says nothing."""
    differences = [x - y for x, y in zip(a, b)]
    if len(differences) < 2 or statistics.stdev(differences) <= 1e-9 * max(abs(x) for x in (*a, *b)):
        return None
    from scipy import stats

    return float(stats.ttest_rel(a, b).pvalue)


def paired_tests(runs, paired, baseline):
    """results.json's paired t-tests: a p-value (or None) per student and PAIRED metric, n = the runs."""
    def values(name, metric):
        return [value(r[name], metric) for r in runs.values()]

    return {"test": "paired t-test (scipy.stats.ttest_rel), two-sided, pairs: runs", "n": len(runs),
            "p_values": {n: {m: paired_p_value(values(n, m), values(baseline, m)) for m in PAIRED}
                         for n in paired}}


def aggregate(runs, teacher, baseline):
    """Per row the mean ± sd over runs of METRICS; per student (not teacher, not baseline) the same of its
    paired difference to the baseline of the same run."""
    names = list(next(iter(runs.values())))
    rows = {n: {m: summary([value(r[n], m) for r in runs.values()]) for m in METRICS} for n in names}
    students = [n for n in names if n not in (teacher, baseline)]
    paired = {n: {m: summary([value(r[n], m) - value(r[baseline], m) for r in runs.values()]) for m in PAIRED}
              for n in students} if baseline else {}
    return rows, paired


def aggregate_lines(rows, paired, baseline, k, tests=None):
    """The tables of :func:`aggregate` (``k``: the beam size): mean ± sd per row, the students' paired
    differences and (``tests``: :func:`paired_tests`) their p-values."""
    lines = [f"| model | BLEU K=1 | BLEU K={k} | K={k} − K=1 | PPL | p(ŷ) % | non-zero params |", "|" + "---|" * 7]
    for name, s in rows.items():
        nonzero = millions(s["params_nonzero"]["mean"])
        if s["params_nonzero"]["sd"]:
            nonzero += f" ± {millions(s['params_nonzero']['sd'])}"
        lines.append(f"| {name} | {pm(s['bleu_greedy'])} | {pm(s['bleu_beam'])} | {pm(s['beam_gain'], fmt='+.1f')} "
                     f"| {pm(s['ppl'])} | {pm(s['p_yhat'], 100, '.2f')} | {nonzero} |")
    if paired:
        lines += ["", f"Paired difference to {baseline} of the same run:", "",
                  f"| student | Δ BLEU K=1 | Δ BLEU K={k} | Δ (K={k} − K=1) | Δ PPL | Δ p(ŷ) (points) |",
                  "|" + "---|" * 6]
        lines += [f"| {name} | {pm(d['bleu_greedy'], fmt='+.1f')} | {pm(d['bleu_beam'], fmt='+.1f')} | "
                  f"{pm(d['beam_gain'], fmt='+.1f')} | {pm(d['ppl'], fmt='+.1f')} | {pm(d['p_yhat'], 100, '+.2f')} |"
                  for name, d in paired.items()]
        if tests:
            lines += ["", f"Paired t-test of each difference to {baseline} (scipy.stats.ttest_rel, two-sided, n = "
                          f"{tests['n']} runs): p-values; n/a: fewer than 2 runs or no variance", "",
                      f"| student | Δ BLEU K=1 | Δ BLEU K={k} | Δ (K={k} − K=1) | Δ PPL | Δ p(ŷ) |",
                      "|" + "---|" * 6]
            lines += ["| " + " | ".join([name] + ["n/a" if p is None else f"{p:.3g}" for p in ps.values()]) + " |"
                      for name, ps in tests["p_values"].items()]
    elif not baseline:
        lines += ["", "(no baseline row: no paired differences)"]
    return lines


def check_findings(runs, teacher, baseline, seqkd=SEQKD, best=BEST):
    """The findings of the paper's Table 1 (Kim & Rush 2016, §5), checked in every run of
    ``{label: {name: row}}``: a list of {finding, claim, runs: {label: bool}, holds, ...}. A finding
    whose rows are missing is "not checked"; (1)'s spread and (5) need several runs. (4) compares the
    combination ``best`` with the paper's other student rows only (``compared``; ``gap``: the best of them
    minus ``best``, greedy BLEU): pruned rows and rows beyond the paper are reported, not counted."""
    names = list(next(iter(runs.values())))
    several = len(runs) > 1
    paper = {baseline, seqkd, best, *PAPER_STUDENTS}
    compared = [n for n in names if n in paper and n != teacher]
    others = [n for n in compared if n != best]
    t, b = teacher or "the teacher", baseline or "the baseline"
    claims = [
        (1, f"{seqkd} beats {b} by ≥ 1 BLEU with greedy decoding", (seqkd, baseline),
         lambda r: r[seqkd]["bleu_greedy"] >= r[baseline]["bleu_greedy"] + 1),
        (2, f"{seqkd} gains less from beam search (beam − greedy BLEU) than {b}", (seqkd, baseline),
         lambda r: value(r[seqkd], "beam_gain") < value(r[baseline], "beam_gain")),
        (3, f"{seqkd} has a higher p(ŷ) and a worse (higher) gold PPL than {b}", (seqkd, baseline),
         lambda r: r[seqkd]["p_yhat"] > r[baseline]["p_yhat"] and r[seqkd]["ppl"] > r[baseline]["ppl"]),
        (4, f"{best} is among the best students: within {WITHIN} BLEU greedy of the best of the paper's student "
            f"rows ({', '.join(compared)}; other rows are not counted)", (best,),
         lambda r: gap(r) <= WITHIN + 1e-9),
        (5, f"{t}'s greedy BLEU spans < 2 BLEU across the runs", (teacher,), None),
    ]

    def gap(r):
        return max(r[n]["bleu_greedy"] for n in others) - r[best]["bleu_greedy"]

    found = []
    for number, claim, needed, holds_in in claims:
        finding = {"finding": number, "claim": claim, "runs": {}, "holds": None}
        absent = [n for n in needed if n not in names]
        if absent:
            finding["not_checked"] = (f"no row named {absent[0]!r}" if absent[0] else
                                      "no teacher row" if number == 5 else "no baseline row")
        elif number == 4 and not others:
            finding["not_checked"] = "no other student row of the paper"
        elif number == 5:
            scores = [r[teacher]["bleu_greedy"] for r in runs.values()]
            if several:
                finding.update(span=max(scores) - min(scores), holds=max(scores) - min(scores) < 2)
        else:
            finding["runs"] = {label: holds_in(r) for label, r in runs.items()}
            finding["holds"] = all(finding["runs"].values())
            if number == 1 and several:
                diff = summary([r[seqkd]["bleu_greedy"] - r[baseline]["bleu_greedy"] for r in runs.values()])
                finding.update(mean_difference=diff["mean"], sd=diff["sd"])
                finding["holds"] = finding["holds"] and diff["mean"] > 2 * diff["sd"]
            if number == 4:
                finding.update(compared=compared, gap={label: gap(r) for label, r in runs.items()})
        found.append(finding)
    return found


def findings_lines(findings, n_runs):
    """results.md's section on the findings: how many runs each holds in, and whether it holds overall."""
    lines = ["## Findings of the paper's Table 1", ""]
    for f in findings:
        line = f"- ({f['finding']}) {f['claim']}: "
        if "not_checked" in f:
            lines.append(line + f"not checked ({f['not_checked']})")
            continue
        if f["runs"]:
            held = sum(f["runs"].values())
            line += (f"holds in {held}/{n_runs} runs" if n_runs > 1 else
                     "holds" if held else "does not hold")
        if f["finding"] == 1:
            line += (f"; mean difference {f['mean_difference']:+.2f} vs 2 sd = {2 * f['sd']:.2f}"
                     if "sd" in f else "; mean difference > 2 sd: needs several runs")
        if f["finding"] == 5:
            line += f"span {f['span']:.2f} BLEU" if "span" in f else "needs several runs"
        if f["holds"] is not None and n_runs > 1:
            line += f" → {'holds' if f['holds'] else 'does not hold'}"
        lines.append(line)
    return lines


def plot(runs, beam, title=""):
    """A figure of greedy and beam BLEU per model (left) and p(ŷ) (right): horizontal bars at the mean, with
    the sd as error bars and each run's value as a dot when there are several runs."""
    from matplotlib.figure import Figure

    names = list(next(iter(runs.values())))
    several = len(runs) > 1
    fig = Figure(figsize=(11, 1.6 + 0.42 * len(names)))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [2, 1]})
    panels = ((left, (("bleu_greedy", -0.2, "greedy (K=1)", "tab:blue"),
                      ("bleu_beam", 0.2, f"beam (K={beam})", "tab:orange")), 1, "BLEU"),
              (right, (("p_yhat", 0, "p(ŷ)", "tab:green"),), 100, "p(ŷ) of its greedy output, %"))
    for ax, bars, scale, xlabel in panels:
        handles, dots = [], None
        for metric, offset, label, color in bars:
            values = [[scale * r[name][metric] for r in runs.values()] for name in names]  # [row][run]
            ys = [i + offset for i in range(len(names))]
            handles.append(ax.barh(ys, [statistics.fmean(v) for v in values], height=0.38 if offset else 0.6,
                                   xerr=[statistics.stdev(v) for v in values] if several else None, capsize=2,
                                   color=color, alpha=0.75, label=label))
            if several:
                dots, = ax.plot([x for v in values for x in v], [y for y, v in zip(ys, values) for _ in v], "o",
                                color="black", markersize=2.5, label="one run")
        ax.set_xlabel(xlabel)
        ax.set_xlim(0, max(1, ax.get_xlim()[1]))  # at least 1 BLEU or 1%: no offset notation for tiny values
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(handles=handles + ([dots] if dots and ax is left else []), loc="lower left",
                  bbox_to_anchor=(0, 1.01), ncol=3, frameon=False, fontsize=9)
    left.set_yticks(range(len(names)), names)
    left.invert_yaxis()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def write(out_dir, lines, data, fig):
    """results.md, results.json and results.png (the figure is rendered before anything is written)."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight")
    atomic_write_lines(os.path.join(out_dir, "results.md"), lines)
    atomic_write_lines(os.path.join(out_dir, "results.json"), [json.dumps(data, indent=2, ensure_ascii=False)])
    with atomic_open(os.path.join(out_dir, "results.png"), "wb") as f:
        f.write(png.getvalue())


def single_run_report(run_dir, eval_dir=None, teacher=None, baseline=None, seqkd=SEQKD, best=BEST, title=""):
    """RUN_DIR/results.{md,json,png} of one run (eval folder: RUN_DIR/eval); returns results.md's lines.
    results.json is the list of rows."""
    rows = load_rows(eval_dir or os.path.join(run_dir, "eval"))
    teacher, baseline = find(rows, teacher, "teacher"), find(rows, baseline, "baseline")
    first, by_name = rows[0], {}
    for r in rows:
        by_name.setdefault(r["name"], r)
    runs = {os.path.basename(os.path.normpath(run_dir)): by_name}
    threads = f"{first['threads']} thread" + ("" if first["threads"] == 1 else "s")
    lines = [title] if title else []
    lines += table(rows, teacher, baseline) + [""] + [
        f"{first['subset']} set, {first['sentences']} sentences; BLEU: sacrebleu ({first['bleu_signature']}); "
        f"speed: source words/s at batch size 1 on {first['device']}, {threads}, decoded by "
        f"{decoders(rows)}; ΔK: vs "
        f"{baseline or '(no baseline row)'}; speed-up: greedy words/s vs "
        f"{teacher + ' with beam search' if teacher else '(no teacher row)'}." +
        (" " + speed_note(rows) if teacher else ""), ""]
    lines += findings_lines(check_findings(runs, teacher, baseline, seqkd, best), 1)
    write(run_dir, lines, rows, plot(runs, first["beam"], title))
    logger.info("wrote %s/results.{md,json,png} (%d models)", run_dir, len(rows))
    return lines


def decoders(rows):
    """Who decoded the rows' BLEU and speed runs (seqkd-eval --engine): one engine, or each with its rows."""
    by_engine = {}
    for r in rows:
        engine = (r.get("engine") or "fairseq") + (f" {r['engine_quantize']}" if r.get("engine_quantize") else "")
        names = by_engine.setdefault(engine, [])
        names += [r["name"]] if r["name"] not in names else []
    if len(by_engine) == 1:
        return next(iter(by_engine))
    return "; ".join(f"{engine} ({', '.join(names)})" for engine, names in by_engine.items())


def multi_run_report(out_dir, run_dirs, teacher=None, baseline=None, seqkd=SEQKD, best=BEST, title=""):
    """OUT_DIR/results.{md,json,png} of several runs of one study (RUN_DIR/eval each; rows matched by
    name); returns results.md's lines."""
    runs = load_runs(run_dirs)
    first_rows = list(next(iter(runs.values())).values())
    teacher, baseline = find(first_rows, teacher, "teacher"), find(first_rows, baseline, "baseline")
    rows, paired = aggregate(runs, teacher, baseline)
    tests = paired_tests(runs, paired, baseline) if paired else None
    findings = check_findings(runs, teacher, baseline, seqkd, best)
    first = first_rows[0]
    devices = sorted({r["device"] for by_name in runs.values() for r in by_name.values()})
    lines = [title] if title else []
    lines += aggregate_lines(rows, paired, baseline, first["beam"], tests) + [
        "", f"{len(runs)} runs ({', '.join(runs)}); mean ± sample sd (n − 1) over runs; {first['subset']} set, "
            f"{first['sentences']} sentences; BLEU: sacrebleu ({first['bleu_signature']}); device: "
            f"{', '.join(devices)}; decoded by "
            f"{decoders([r for by_name in runs.values() for r in by_name.values()])}.", ""]
    lines += findings_lines(findings, len(runs))
    data = {"runs": {label: list(by_name.values()) for label, by_name in runs.items()}, "teacher": teacher,
            "baseline": baseline, "aggregates": rows, "paired_differences": paired, "paired_tests": tests,
            "findings": findings}
    write(out_dir, lines, data, plot(runs, first["beam"], title))
    logger.info("wrote %s/results.{md,json,png} (%d models, %d runs)", out_dir, len(rows), len(runs))
    return lines

"""seqkd-report on fixed seqkd-eval JSONs: one run's table, several runs' mean ± sd and paired differences
against hand-computed values, the paper's findings built to hold and to fail, and bad inputs."""

import json
import os

import pytest

from fairseq_seqkd import report
from fairseq_seqkd.cli.report import cli_main

SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
RESULTS = ("results.md", "results.json", "results.png")


def row(name, greedy, beam, ppl, p_yhat, params=2_000_000, nonzero=None, **extra):
    """A complete seqkd-eval result."""
    return dict(name=name, bleu_greedy=greedy, bleu_beam=beam, beam=5, ppl=ppl, p_yhat=p_yhat, params=params,
                params_nonzero=params if nonzero is None else nonzero, src_words_per_sec_greedy=600.0,
                src_words_per_sec_beam=400.0, subset="test", sentences=250, bleu_signature=SIGNATURE,
                device="cpu (x86_64)", threads=2, **extra)


def write_run(folder, rows):
    """A run folder with eval/NN.json per row (file names keep the rows' order); returns its path."""
    os.makedirs(folder / "eval")
    for i, r in enumerate(rows):
        (folder / "eval" / f"{i:02d}.json").write_text(json.dumps(r, indent=2))
    return str(folder)


# Three seeds in which every finding holds. Hand-computed over the runs:
#   baseline greedy 10, 12, 14: mean 12, sd 2;  Seq-KD greedy 13, 14, 18: paired differences 3, 2, 4 -> mean 3, sd 1
#   beam - greedy: baseline 2, 3, 4 -> mean 3, sd 1; Seq-KD 0.5, 0.5, 0.5 -> paired -1.5, -2.5, -3.5 -> -2.5 ± 1
#   p(ŷ): baseline 1%, 1%, 1%; Seq-KD 2%, 3%, 4% -> paired +1, +2, +3 points -> 2 ± 1
#   PPL: baseline 20, 20, 23 -> mean 21, sd sqrt(3); Seq-KD 50, 60, 70 -> paired 30, 40, 47 -> 39 ± sqrt(73)
#   teacher greedy 20, 21, 21.5: span 1.5 < 2
SEEDS = {
    "seed-1": {"Teacher 1x256": (20, 22, 15, 0.02), "Baseline 1x192": (10, 12, 20, 0.01),
               "Seq-KD": (13, 13.5, 50, 0.02), "Seq-KD + Seq-Inter + Word-KD": (15, 15.5, 40, 0.03),
               "Seq-KD + Seq-Inter + Word-KD, pruned 50%": (16, 16.5, 40, 0.03)},
    "seed-2": {"Teacher 1x256": (21, 23, 15, 0.02), "Baseline 1x192": (12, 15, 20, 0.01),
               "Seq-KD": (14, 14.5, 60, 0.03), "Seq-KD + Seq-Inter + Word-KD": (15, 15.5, 40, 0.03),
               "Seq-KD + Seq-Inter + Word-KD, pruned 50%": (14, 14.5, 40, 0.03)},
    "seed-3": {"Teacher 1x256": (21.5, 23, 15, 0.02), "Baseline 1x192": (14, 18, 23, 0.01),
               "Seq-KD": (18, 18.5, 70, 0.04), "Seq-KD + Seq-Inter + Word-KD": (19, 19.5, 40, 0.03),
               "Seq-KD + Seq-Inter + Word-KD, pruned 50%": (12, 12.5, 40, 0.03)},
}


def study(tmp_path, seeds=SEEDS, change=None):
    """Run folders of the seeds (``change(label, name, values)`` may alter a row's values); returns their paths."""
    folders = []
    for label, rows in seeds.items():
        values = {name: (change(label, name, v) if change else v) for name, v in rows.items()}
        rows = [row(name, *v, nonzero=1_000_000 if "pruned" in name else None) for name, v in values.items()]
        folders.append(write_run(tmp_path / label, rows))
    return folders


def aggregate_report(tmp_path, folders, *options):
    cli_main([str(tmp_path / "out"), "--runs", *folders, *options])
    with open(tmp_path / "out" / "results.json") as f:
        data = json.load(f)
    with open(tmp_path / "out" / "results.md") as f:
        return data, f.read().splitlines()


def test_aggregates_and_paired_differences_equal_hand_computed_values(tmp_path, capsys):
    data, md = aggregate_report(tmp_path, study(tmp_path))
    base, seqkd = data["aggregates"]["Baseline 1x192"], data["aggregates"]["Seq-KD"]
    assert base["bleu_greedy"] == {"mean": 12, "sd": 2, "n": 3, "values": [10, 12, 14]}
    assert base["beam_gain"]["mean"] == 3 and base["beam_gain"]["sd"] == 1
    assert base["ppl"]["mean"] == 21 and base["ppl"]["sd"] == pytest.approx(3 ** 0.5)
    assert seqkd["beam_gain"] == {"mean": 0.5, "sd": 0, "n": 3, "values": [0.5, 0.5, 0.5]}
    diff = data["paired_differences"]["Seq-KD"]
    assert diff["bleu_greedy"] == {"mean": 3, "sd": 1, "n": 3, "values": [3, 2, 4]}
    assert diff["beam_gain"]["mean"] == -2.5 and diff["beam_gain"]["sd"] == 1
    assert diff["p_yhat"]["mean"] == pytest.approx(0.02) and diff["p_yhat"]["sd"] == pytest.approx(0.01)
    assert diff["ppl"]["mean"] == 39 and diff["ppl"]["sd"] == pytest.approx(73 ** 0.5)
    assert set(data["paired_differences"]) == {"Seq-KD", "Seq-KD + Seq-Inter + Word-KD",
                                               "Seq-KD + Seq-Inter + Word-KD, pruned 50%"}  # no teacher, no baseline
    assert data["teacher"] == "Teacher 1x256" and data["baseline"] == "Baseline 1x192"
    assert list(data["runs"]) == ["seed-1", "seed-2", "seed-3"]
    assert data["runs"]["seed-2"][2] == row("Seq-KD", 14, 14.5, 60, 0.03)  # every run's full rows, in file order
    assert "| Baseline 1x192 | 12.0 ± 2.0 | 15.0 ± 3.0 | +3.0 ± 1.0 | 21.0 ± 1.7 | 1.00 ± 0.00 | 2.0M |" in md
    assert "| Seq-KD + Seq-Inter + Word-KD, pruned 50% | 14.0 ± 2.0 | 14.5 ± 2.0 | +0.5 ± 0.0 | 40.0 ± 0.0 | " \
           "3.00 ± 0.00 | 1.0M |" in md
    assert "| Seq-KD | +3.0 ± 1.0 | +0.5 ± 1.0 | -2.5 ± 1.0 | +39.0 ± 8.5 | +2.00 ± 1.00 |" in md
    assert any(line.startswith("3 runs (seed-1, seed-2, seed-3); mean ± sample sd (n − 1) over runs; test set, "
                               f"250 sentences; BLEU: sacrebleu ({SIGNATURE}); device: cpu (x86_64); decoded by fairseq.")
               for line in md)
    assert capsys.readouterr().out.splitlines()[-len(md):] == md  # what it prints is results.md
    assert (tmp_path / "out" / "results.png").stat().st_size > 10000


def finding(data, number):
    return next(f for f in data["findings"] if f["finding"] == number)


def check(folders, seqkd=report.SEQKD, best=report.BEST):
    """The findings of runs as results.json and results.md hold them, without writing (and plotting) them."""
    runs = report.load_runs(folders)
    found = report.check_findings(runs, "Teacher 1x256", "Baseline 1x192", seqkd, best)
    return {"findings": found}, report.findings_lines(found, len(runs))


def test_every_finding_holds_in_every_run(tmp_path):
    data, md = aggregate_report(tmp_path, study(tmp_path))
    for number in (1, 2, 3, 4):
        assert finding(data, number)["runs"] == {"seed-1": True, "seed-2": True, "seed-3": True}
        assert finding(data, number)["holds"] is True
    assert finding(data, 1)["mean_difference"] == 3 and finding(data, 1)["sd"] == 1
    assert finding(data, 5)["span"] == 1.5 and finding(data, 5)["holds"] is True
    text = "\n".join(md)
    assert ("(1) Seq-KD beats Baseline 1x192 by ≥ 1 BLEU with greedy decoding: holds in 3/3 runs; "
            "mean difference +3.00 vs 2 sd = 2.00 → holds") in text
    assert "(5) Teacher 1x256's greedy BLEU spans < 2 BLEU across the runs: span 1.50 BLEU → holds" in text
    assert ("(4) Seq-KD + Seq-Inter + Word-KD is among the best students: within 0.5 BLEU greedy of the best of "
            "the paper's student rows (Baseline 1x192, Seq-KD, Seq-KD + Seq-Inter + Word-KD; other rows are not "
            "counted): holds in 3/3 runs → holds") in text  # a pruned row beats it in seed-1


def seed_2(name, values):
    """A change of one row's values in seed-2 only."""
    return lambda label, row_name, v: values if (label, row_name) == ("seed-2", name) else v


@pytest.mark.parametrize("number, change, line", [
    (1, seed_2("Seq-KD", (12.5, 13, 60, 0.03)),
     "holds in 2/3 runs; mean difference +2.50 vs 2 sd = 3.61 → does not hold"),  # differences 3, 0.5, 4
    (2, seed_2("Seq-KD", (14, 17.5, 60, 0.03)), "holds in 2/3 runs → does not hold"),  # gain 3.5 > the baseline's 3
    (3, seed_2("Seq-KD", (14, 14.5, 60, 0.009)), "holds in 2/3 runs → does not hold"),  # p(ŷ) below the baseline's
    (3, seed_2("Seq-KD", (14, 14.5, 19, 0.03)), "holds in 2/3 runs → does not hold"),  # a better gold PPL
    (4, seed_2("Seq-KD", (15.6, 16, 60, 0.03)), "holds in 2/3 runs → does not hold"),  # 0.6 ahead of it
    (5, seed_2("Teacher 1x256", (22, 23, 15, 0.02)), "span 2.00 BLEU → does not hold"),
])
def test_each_finding_fails_when_a_run_breaks_it(tmp_path, number, change, line):
    data, md = check(study(tmp_path, change=change))
    assert [f["finding"] for f in data["findings"] if not f["holds"]] == [number]
    if number != 5:
        assert finding(data, number)["runs"] == {"seed-1": True, "seed-2": False, "seed-3": True}
    assert next(x for x in md if x.startswith(f"- ({number})")).endswith(": " + line)


def test_finding_1_needs_the_mean_difference_above_twice_its_sd(tmp_path):
    # Seq-KD ≥ baseline + 1 in every run, but the differences 3, 2, 9 scatter: mean 14/3 < 2 sd = 2 sqrt(43/3)
    change = lambda label, name, v: (23, 23.5, 70, 0.04) if (label, name) == ("seed-3", "Seq-KD") else v  # noqa
    data, md = check(study(tmp_path, change=change))
    f = finding(data, 1)
    assert f["runs"] == {"seed-1": True, "seed-2": True, "seed-3": True} and f["holds"] is False
    assert f["mean_difference"] == pytest.approx(14 / 3) and f["sd"] == pytest.approx((43 / 3) ** 0.5)
    assert "holds in 3/3 runs; mean difference +4.67 vs 2 sd = 7.57 → does not hold" in "\n".join(md)


def test_runs_are_labelled_by_their_path_below_the_common_folder(tmp_path):
    folders = [write_run(tmp_path / f"seed-{s}" / "valid", [row("Teacher 1x256", 20 + s, 21, 15, 0.02)])
               for s in (1, 2)]
    assert list(report.load_runs(folders)) == ["seed-1/valid", "seed-2/valid"]
    assert list(report.load_runs(study(tmp_path))) == ["seed-1", "seed-2", "seed-3"]


def test_missing_rows_are_not_checked_and_names_are_options(tmp_path):
    rename = {"Seq-KD": "Seq-KD (beam 5)", "Seq-KD + Seq-Inter + Word-KD": "Best"}
    seeds = {label: {rename.get(n, n): v for n, v in rows.items()} for label, rows in SEEDS.items()}
    folders = study(tmp_path, seeds)
    data, md = check(folders)
    for number in (1, 2, 3):
        assert finding(data, number)["holds"] is None and finding(data, number)["runs"] == {}
    assert "- (1) Seq-KD beats Baseline 1x192 by ≥ 1 BLEU with greedy decoding: not checked (no row named " \
           "'Seq-KD')" in md
    assert finding(data, 4)["not_checked"] == "no row named 'Seq-KD + Seq-Inter + Word-KD'"
    data, md = aggregate_report(tmp_path, folders, "--seqkd", "Seq-KD (beam 5)", "--best", "Best")
    assert all(f["holds"] for f in data["findings"])


def test_single_run_keeps_its_table_and_checks_the_findings(tmp_path, capsys):
    rows = [row("Teacher 2x256", 15.36, 17.87, 18.98, 0.0274, params=4102096, nonzero=4101584),
            row("Baseline 2x128", 5.9, 7.1, 33.4, 0.004, params=1200000, nonzero=1199872),
            row("Seq-KD", 11.0, 11.2, 60.2, 0.15, params=1200000, nonzero=240000)]
    for r, speed in zip(rows, ((587, 372), (1200, 700), (1190, 690))):
        r["src_words_per_sec_greedy"], r["src_words_per_sec_beam"] = speed
        r.update(src_words_per_sec_greedy_spread=0.05, src_words_per_sec_beam_spread=0.05, speed_repeats=3)
    folder = write_run(tmp_path / "run", rows)
    cli_main([folder])
    with open(tmp_path / "run" / "results.md") as f:
        lines = f.read().splitlines()
    assert capsys.readouterr().out.splitlines()[-len(lines):] == lines
    assert lines[:5] == [
        "| model | params (non-zero) | BLEU K=1 | ΔK=1 | BLEU K=5 | ΔK=5 | PPL | p(ŷ) | words/s K=1 | "
        "words/s K=5 | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        "| Teacher 2x256 | 4.1M | 15.4 | +9.5 | 17.9 | +10.8 | 19.0 | 2.7% | 587 | 372 | 1.6x |",
        "| Baseline 2x128 | 1.2M | 5.9 |  | 7.1 |  | 33.4 | 0.4% | 1200 | 700 | 3.2x |",
        "| Seq-KD | 1.2M (240k) | 11.0 | +5.1 | 11.2 | +4.1 | 60.2 | 15.0% | 1190 | 690 | 3.2x |",
    ]
    assert lines[6].startswith(f"test set, 250 sentences; BLEU: sacrebleu ({SIGNATURE}); speed: source words/s "
                               "at batch size 1 on cpu (x86_64), 2 threads, decoded by fairseq; ΔK: vs Baseline 2x128; speed-up: "
                               "greedy words/s vs Teacher 2x256 with beam search.")
    assert lines[-5:] == [
        "- (1) Seq-KD beats Baseline 2x128 by ≥ 1 BLEU with greedy decoding: holds; mean difference > 2 sd: "
        "needs several runs",
        "- (2) Seq-KD gains less from beam search (beam − greedy BLEU) than Baseline 2x128: holds",
        "- (3) Seq-KD has a higher p(ŷ) and a worse (higher) gold PPL than Baseline 2x128: holds",
        "- (4) Seq-KD + Seq-Inter + Word-KD is among the best students: within 0.5 BLEU greedy of the best of the "
        "paper's student rows (Baseline 2x128, Seq-KD; other rows are not counted): not checked (no row named "
        "'Seq-KD + Seq-Inter + Word-KD')",
        "- (5) Teacher 2x256's greedy BLEU spans < 2 BLEU across the runs: needs several runs",
    ]
    with open(tmp_path / "run" / "results.json") as f:
        assert json.load(f) == rows  # the rows, as before
    import matplotlib.image

    image = matplotlib.image.imread(str(tmp_path / "run" / "results.png"))
    assert image.shape[0] > 200 and image.shape[1] > 500


def test_the_plot_shows_means_sds_and_every_run_with_readable_labels(tmp_path):
    runs = {label: {name: row(name, *v) for name, v in rows.items()} for label, rows in SEEDS.items()}
    fig = report.plot(runs, 5)
    left, right = fig.axes
    bars = [patch.get_width() for patch in left.patches]
    assert bars[:5] == [pytest.approx(v) for v in (62.5 / 3, 12, 15, 49 / 3, 14)]  # greedy means, row order
    assert sorted(p.get_width() for p in right.patches) == pytest.approx([1, 2, 3, 3, 3])  # p(ŷ) in %
    greedy_dots = next(line for line in left.lines if line.get_marker() == "o").get_xydata().tolist()
    assert [[x, y] for x, y in greedy_dots if y == 1 - 0.2] == [[10, 0.8], [12, 0.8], [14, 0.8]]  # the baseline
    fig.draw_without_rendering()
    labels = [t.get_window_extent() for t in left.get_yticklabels()]
    assert [t.get_text() for t in left.get_yticklabels()] == list(SEEDS["seed-1"])
    assert all(box.x1 < left.get_window_extent().x0 for box in labels)  # names left of the bars
    assert all(a.y0 >= b.y1 or b.y0 >= a.y1 for a, b in zip(labels, labels[1:]))  # names do not overlap
    legend = left.get_legend().get_window_extent()
    assert legend.y0 >= left.get_window_extent().y1  # the legend sits above the bars


def bad_json(tmp_path, text):
    folder = write_run(tmp_path / "run", [row("Teacher", 1, 2, 3, 0.1)])
    (tmp_path / "run" / "eval" / "01.json").write_text(text)
    return folder


@pytest.mark.parametrize("setup, message", [
    (lambda tmp: [str(tmp / "run")], r"run/eval: no seqkd-eval JSON files"),
    (lambda tmp: [bad_json(tmp, '{"name": "x",\n  "bleu_greedy": }')], r"01.json:2: not JSON"),
    (lambda tmp: [bad_json(tmp, json.dumps({k: v for k, v in row("x", 1, 2, 3, 0.1).items() if k != "ppl"}))],
     r"01.json: not a seqkd-eval result \(missing ppl\)"),
    (lambda tmp: [bad_json(tmp, json.dumps(row("x", "12.1", 2, 3, 0.1)))],
     r"01.json: bleu_greedy is '12.1', not a number"),
    (lambda tmp: [bad_json(tmp, "[1, 2]")], r"01.json: not a seqkd-eval result \(not a JSON object\)"),
    (lambda tmp: [str(tmp / "out"), "--runs", *study(tmp)[:1]], r"aggregating needs at least 2 runs, got 1"),
    (lambda tmp: (lambda runs: [str(tmp / "out"), "--runs", *runs[:2], runs[0]])(study(tmp)),
     r"seed-1: the same run twice"),
    (lambda tmp: [str(tmp / "out"), "--runs", *study(tmp, {**SEEDS, "seed-2": {
        n: v for n, v in list(SEEDS["seed-2"].items())[:-1] + [("Word-KD", (1, 2, 3, 0.1))]}})],
     r"seed-2: not the rows of .*seed-1 \(missing: Seq-KD \+ Seq-Inter \+ Word-KD, pruned 50%; extra: Word-KD\)"),
    (lambda tmp: [str(tmp / "out"), "--runs", *study(tmp), "--teacher", "Teacher 4x1000"],
     r"no row named 'Teacher 4x1000' \(rows: Teacher 1x256, Baseline 1x192, "),
    (lambda tmp: [str(tmp / "out"), "--runs", *study(tmp), "--eval-dir", str(tmp)], r"--eval-dir is for one run"),
])
def test_bad_inputs_stop_with_one_line_and_write_nothing(tmp_path, setup, message):
    argv = setup(tmp_path)
    with pytest.raises(SystemExit, match=message) as e:
        cli_main(argv)
    assert str(e.value).startswith("error: ") and "\n" not in str(e.value)
    for folder in (tmp_path / "out", tmp_path / "run"):
        assert not any((folder / name).exists() for name in RESULTS)


def test_runs_on_another_test_set_are_refused(tmp_path):
    folders = study(tmp_path)
    path = tmp_path / "seed-3" / "eval" / "01.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), sentences=200)))
    with pytest.raises(SystemExit, match=r"seed-3: 'Baseline 1x192' was evaluated on the test set \(200 sentences\) "
                                         r"with beam 5, but 'Teacher 1x256' of .*seed-1 on the test set \(250"):
        cli_main([str(tmp_path / "out"), "--runs", *folders])
    assert not (tmp_path / "out").exists()


# --- which rows are the teacher and the baseline: exact names only ---

def single_run(tmp_path, names, *options):
    """A one-run report of rows called ``names`` (greedy BLEU 10, 11, ...); returns results.md's lines."""
    rows = [row(name, 10 + i, 12 + i, 20, 0.01) for i, name in enumerate(names)]
    cli_main([write_run(tmp_path / "run", rows), *options])
    with open(tmp_path / "run" / "results.md") as f:
        return f.read().splitlines()


@pytest.mark.parametrize("names, teacher, baseline", [
    (["Teacher 1x256", "Baseline 1x128", "Seq-KD"], "Teacher 1x256", "Baseline 1x128"),
    (["Seq-KD", "Baseline", "Teacher"], "Teacher", "Baseline"),
    (["Baseline + Seq-Inter", "Teacher 2x500", "Baseline 2x100"], "Teacher 2x500", "Baseline 2x100"),
])
def test_without_options_the_teacher_and_baseline_rows_are_found_by_their_exact_form(tmp_path, names, teacher,
                                                                                     baseline):
    md = single_run(tmp_path, names)
    footnote = next(line for line in md if line.startswith("test set"))
    assert f"ΔK: vs {baseline}; speed-up: greedy words/s vs {teacher} with beam search." in footnote


@pytest.mark.parametrize("names, options, message", [
    # the defect: "Baseline + Seq-Inter" silently became the baseline of every difference and finding
    (["Teacher 1x256", "Baseline + Seq-Inter", "Seq-KD"], [],
     r"no row named 'Baseline' or 'Baseline ARCH' \(rows: Teacher 1x256, Baseline \+ Seq-Inter, Seq-KD\): "
     r"name the baseline row with --baseline NAME"),
    (["Seq-KD (teacher beam 5)", "Baseline 1x128"], [],
     r"no row named 'Teacher' or 'Teacher ARCH' \(rows: Seq-KD \(teacher beam 5\), Baseline 1x128\): "
     r"name the teacher row with --teacher NAME"),
    (["Teacher 1x256", "Baseline 1x128", "Baseline 1x64"], [],
     r"2 rows could be the baseline \(Baseline 1x128, Baseline 1x64\): name it with --baseline NAME"),
    (["Teacher 1x256", "Baseline 1x128"], ["--baseline", "Baseline"],
     r"no row named 'Baseline' \(rows: Teacher 1x256, Baseline 1x128\)"),  # never a substring
    (["Teacher 1x256", "Baseline 1x128"], ["--teacher", "teacher 1x256"],
     r"no row named 'teacher 1x256' \(rows: Teacher 1x256, Baseline 1x128\)"),
])
def test_a_missing_or_ambiguous_teacher_or_baseline_is_refused(tmp_path, names, options, message):
    with pytest.raises(SystemExit, match=message) as e:
        single_run(tmp_path, names, *options)
    assert str(e.value).startswith("error: ") and "\n" not in str(e.value)
    assert not any((tmp_path / "run" / name).exists() for name in RESULTS)


def test_the_options_pick_any_row_by_its_exact_name_or_none(tmp_path):
    md = single_run(tmp_path, ["Teacher 1x256", "Baseline + Seq-Inter", "Seq-KD"], "--baseline",
                    "Baseline + Seq-Inter")
    assert md[4] == ("| Seq-KD | 2.0M | 12.0 | +1.0 | 14.0 | +1.0 | 20.0 | 1.0% | 600 | 400 | "
                     "n/a (measured once) |")
    md = single_run(tmp_path / "b", ["Teacher 1x256", "Seq-KD"], "--baseline", "")
    assert md[3] == "| Seq-KD | 2.0M | 11.0 |  | 13.0 |  | 20.0 | 1.0% | 600 | 400 | n/a (measured once) |"
    assert "ΔK: vs (no baseline row);" in md[5]
    assert md[-5].endswith(": not checked (no baseline row)")


# --- finding 4: the combination is among the best of the paper's students ---

# Kim & Rush (2016), Table 1, WMT14 En→De (teacher 4x1000, students 2x500): greedy, beam, PPL, p(ŷ); PPL and
# p(ŷ) the paper does not give are set so that they do not matter.
PAPER = {"Teacher 4x1000": (17.7, 19.5, 6.0, 0.013), "Baseline 2x500": (14.7, 17.6, 8.2, 0.009),
         "Word-KD": (15.4, 17.7, 8.0, 0.01), "Seq-KD": (18.9, 19.0, 22.7, 0.169),
         "Seq-KD + Seq-Inter + Word-KD": (18.8, 19.2, 20.0, 0.1)}


def paper_runs(extra=()):
    rows = {**PAPER, **dict(extra)}
    return {"paper": {name: row(name, *v) for name, v in rows.items()}}


def test_the_findings_hold_on_the_papers_own_table_1():
    found = report.check_findings(paper_runs(), "Teacher 4x1000", "Baseline 2x500")
    assert [f["holds"] for f in found] == [True, True, True, True, None]
    four = found[3]
    assert four["compared"] == ["Baseline 2x500", "Word-KD", "Seq-KD", "Seq-KD + Seq-Inter + Word-KD"]
    assert four["gap"] == {"paper": pytest.approx(0.1)}  # Seq-KD 18.9 vs the combination 18.8
    assert report.findings_lines(found, 1)[5] == (
        "- (4) Seq-KD + Seq-Inter + Word-KD is among the best students: within 0.5 BLEU greedy of the best of the "
        "paper's student rows (Baseline 2x500, Word-KD, Seq-KD, Seq-KD + Seq-Inter + Word-KD; other rows are "
        "not counted): holds")


@pytest.mark.parametrize("extra, holds", [
    ({"Seq-KD + Word-KD": (19.3, 19.4, 20, 0.1)}, True),  # 0.5 ahead: within
    ({"Seq-KD + Word-KD": (19.4, 19.4, 20, 0.1)}, False),
    ({"Baseline + Seq-Inter": (19.4, 19.4, 20, 0.1)}, False),
    # rows beyond the paper's student rows are reported, not counted
    ({"Seq-KD + Seq-Inter + Word-KD, pruned 50%": (25, 25, 20, 0.1)}, True),
    ({"Seq-KD (3 outputs)": (25, 25, 20, 0.1)}, True),
    ({"2x300 Seq-KD + Seq-Inter + Word-KD": (25, 25, 20, 0.1)}, True),
])
def test_finding_4_counts_only_the_papers_student_rows_within_half_a_bleu(extra, holds):
    found = report.check_findings(paper_runs(extra), "Teacher 4x1000", "Baseline 2x500")
    assert found[3]["holds"] is holds
    assert [f["holds"] for f in found[:3]] == [True, True, True]


def test_finding_4_alone_is_not_checked():
    runs = {"r": {n: row(n, 10, 11, 20, 0.01) for n in ("Teacher", "Seq-KD + Seq-Inter + Word-KD")}}
    found = report.check_findings(runs, "Teacher", None)
    assert found[3]["not_checked"] == "no other student row of the paper" and found[3]["holds"] is None


# --- paired t-tests across runs ---

def t_test_p_df2(differences):
    """The two-sided p-value of a one-sample t-test of 3 paired differences (t distribution with 2 degrees of
    freedom: P(|T| > t) = 1 − t / sqrt(t² + 2)), independent of scipy."""
    mean = sum(differences) / 3
    sd = (sum((d - mean) ** 2 for d in differences) / 2) ** 0.5
    t = abs(mean) / (sd / 3 ** 0.5)
    return 1 - t / (t * t + 2) ** 0.5


def test_paired_differences_get_a_two_sided_paired_t_test(tmp_path):
    data, md = aggregate_report(tmp_path, study(tmp_path))
    tests = data["paired_tests"]
    assert tests["test"] == "paired t-test (scipy.stats.ttest_rel), two-sided, pairs: runs" and tests["n"] == 3
    p = tests["p_values"]
    assert p["Seq-KD"]["bleu_greedy"] == pytest.approx(t_test_p_df2([3, 2, 4]))  # 0.0351
    assert p["Seq-KD"]["ppl"] == pytest.approx(t_test_p_df2([30, 40, 47]))
    assert p["Seq-KD"]["beam_gain"] == pytest.approx(t_test_p_df2([-1.5, -2.5, -3.5]))
    # the combination's p(ŷ) is 1 point above the baseline's in every run: no variance, no p-value
    assert p["Seq-KD + Seq-Inter + Word-KD"]["p_yhat"] is None
    assert set(p) == set(data["paired_differences"])
    at = md.index("Paired t-test of each difference to Baseline 1x192 (scipy.stats.ttest_rel, two-sided, n = 3 "
                  "runs): p-values; n/a: fewer than 2 runs or no variance")
    assert md[at + 2:at + 5] == [
        "| student | Δ BLEU K=1 | Δ BLEU K=5 | Δ (K=5 − K=1) | Δ PPL | Δ p(ŷ) |", "|---|---|---|---|---|---|",
        f"| Seq-KD | 0.0351 | {t_test_p_df2([1.5, -0.5, 0.5]):.3g} | {t_test_p_df2([-1.5, -2.5, -3.5]):.3g} | "
        f"{t_test_p_df2([30, 40, 47]):.3g} | {t_test_p_df2([1, 2, 3]):.3g} |"]
    assert md[at + 5].endswith(" | n/a |")


@pytest.mark.parametrize("a, b", [([1.0], [0.0]), ([1.0, 2.0], [0.0, 1.0]), ([0.03, 0.04], [0.01, 0.02])])
def test_no_p_value_with_one_run_or_no_variance(a, b):
    assert report.paired_p_value(a, b) is None


# --- speed-ups only beyond the measured spread ---

def test_speed_ups_are_printed_only_beyond_the_measured_spread(tmp_path):
    rows = [row("Teacher 2x256", 15, 17, 19, 0.03), row("Baseline 1x128", 6, 7, 33, 0.004),
            row("Seq-KD", 11, 11.2, 60, 0.15), row("Word-KD", 8, 9, 30, 0.01)]
    # (greedy, spread, beam, spread): the teacher's beam search 400 words/s, max − min = 40
    speeds = [(600, 0.5, 400, 0.1), (1200, 0.05, 700, 0.1), (460, 0.04, 300, 0.1), (500, 0.2, 300, 0.1)]
    for r, (greedy, g_spread, beam, b_spread) in zip(rows, speeds):
        r.update(src_words_per_sec_greedy=greedy, src_words_per_sec_greedy_spread=g_spread,
                 src_words_per_sec_beam=beam, src_words_per_sec_beam_spread=b_spread, speed_repeats=3)
    cli_main([write_run(tmp_path / "run", rows)])
    with open(tmp_path / "run" / "results.md") as f:
        md = f.read().splitlines()
    speed_ups = [line.rsplit("|", 2)[1].strip() for line in md[2:6]]
    # 600 − 400 = 200 < 300 + 40; 1200 − 400 = 800 > 60 + 40; 460 − 400 = 60 > 18.4 + 40;
    # 500 − 400 = 100 < 100 + 40
    assert speed_ups == ["~1x (within spread)", "3.0x", "1.1x", "~1x (within spread)"]
    assert md[7].endswith(
        "speed-up: greedy words/s vs Teacher 2x256 with beam search. A speed-up is printed only where the two "
        "speeds differ by more than the sum of their spreads, else ~1x (within spread); a speed's spread is max − "
        "min of its 3 repeated measurements (seqkd-eval's src_words_per_sec_*_spread × the median).")


def test_the_footnote_counts_threads_in_words(tmp_path):
    """One thread is "1 thread", not "1 threads"."""
    for threads, words in ((1, "1 thread, decoded"), (2, "2 threads, decoded")):
        rows = [dict(row("Teacher", 15, 17, 19, 0.02), threads=threads), dict(row("Baseline", 6, 7, 33, 0.004),
                                                                              threads=threads)]
        cli_main([write_run(tmp_path / f"run{threads}", rows)])
        with open(tmp_path / f"run{threads}" / "results.md") as f:
            assert f"on cpu (x86_64), {words} by fairseq;" in f.read()


def test_the_footnote_names_the_engine_that_decoded_each_row(tmp_path):
    """seqkd-eval --engine: the speeds (and BLEU runs) of rows decoded by another engine say so, by row."""
    from fairseq_seqkd.report import decoders

    rows = [row("Teacher", 15, 17, 19, 0.02, engine="seqkd", engine_quantize="int8"),
            row("Baseline", 6, 7, 33, 0.004), row("Seq-KD", 11, 11, 60, 0.1, engine="fairseq", engine_quantize=None),
            row("Seq-KD int8", 11, 11, 60, 0.1, engine="seqkd", engine_quantize="int8")]
    assert decoders(rows) == "seqkd int8 (Teacher, Seq-KD int8); fairseq (Baseline, Seq-KD)"
    assert decoders(rows[1:3]) == "fairseq"  # an old JSON without "engine" was decoded by fairseq
    cli_main([write_run(tmp_path / "run", rows)])
    with open(tmp_path / "run" / "results.md") as f:
        assert "2 threads, decoded by seqkd int8 (Teacher, Seq-KD int8); fairseq (Baseline, Seq-KD); ΔK" in f.read()
    # over several runs, each row is named once
    runs = [write_run(tmp_path / f"seed-{k}", rows) for k in (1, 2)]
    _, md = aggregate_report(tmp_path, runs, "--teacher", "Teacher", "--baseline", "Baseline")
    assert any(line.endswith("device: cpu (x86_64); decoded by seqkd int8 (Teacher, Seq-KD int8); fairseq "
                             "(Baseline, Seq-KD).") for line in md)

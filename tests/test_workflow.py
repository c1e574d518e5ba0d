"""The recipes' step runner: dependency order, steps at the same time, resume, failures."""

import io
import os

import pytest

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.workflow import Runner, read_plan


def write_plan(folder, rows):
    """rows: (name, output, after, command); logs go to folder/logs/NAME.log."""
    path = folder / "plan.tsv"
    with open(path, "w") as f:
        for name, output, after, command in rows:
            f.write(f"{name}\t{output}\t{folder / 'logs' / name}.log\t{after}\t0\t{command}\n")
    return path


def run(plan, jobs=1, cpus=2):
    out = io.StringIO()
    Runner(read_plan(plan), jobs=jobs, out=out, cpus=cpus).run()
    return out.getvalue()


def test_dependencies_run_first_and_outputs_mark_steps_done(tmp_path):
    trace = tmp_path / "trace"
    plan = write_plan(tmp_path, [
        ("a", tmp_path / "a.done", "-", f"echo a >> {trace}"),
        ("b", tmp_path / "b.out", "a", f"echo b >> {trace} && echo made > {tmp_path / 'b.out'}"),
        ("c", tmp_path / "c.done", "a,b", f"echo c >> {trace}"),
    ])
    text = run(plan, jobs=2)
    assert trace.read_text().split() == ["a", "b", "c"]
    assert (tmp_path / "a.done").read_text() == "" and (tmp_path / "b.out").read_text() == "made\n"
    lines = text.splitlines()
    assert lines[0].startswith("3 of 3 steps to run")
    assert [line.split()[3] for line in lines[1:4]] == ["a", "b", "c"]  # one line per step, in order
    assert "[ 3/3]" in lines[3] and lines[-1].endswith("all 3 steps done")
    # a second run does nothing: every output exists
    trace.unlink()
    assert run(plan).startswith("0 of 3 steps to run") and not trace.exists()


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_independent_steps_overlap_only_with_several_jobs(tmp_path):
    def intervals(jobs):
        folder = tmp_path / f"jobs{jobs}"
        folder.mkdir()
        rows = [(name, folder / f"{name}.done", "-",
                 f"date +%s.%N > {folder / name}.start; sleep 0.6; date +%s.%N > {folder / name}.end")
                for name in ("x", "y")]
        run(write_plan(folder, rows), jobs=jobs)
        return [tuple(float((folder / f"{n}.{k}").read_text()) for k in ("start", "end")) for n in ("x", "y")]

    (x0, x1), (y0, y1) = intervals(2)
    assert y0 < x1 and x0 < y1  # ran at the same time
    (x0, x1), (y0, y1) = intervals(1)
    assert x1 <= y0  # one after the other


def test_each_step_gets_its_share_of_the_cores(tmp_path):
    plan = write_plan(tmp_path, [("t", tmp_path / "t.done", "-", f"echo $OMP_NUM_THREADS > {tmp_path / 'n'}")])
    run(plan, jobs=2, cpus=8)
    assert (tmp_path / "n").read_text() == "4\n"


def test_a_failing_step_stops_the_run_and_shows_its_log(tmp_path):
    plan = write_plan(tmp_path, [
        ("slow", tmp_path / "slow.done", "-", f"sleep 30; touch {tmp_path / 'slow.finished'}"),
        ("bad", tmp_path / "bad.done", "-", "echo line one; echo the reason >&2; exit 3"),
        ("later", tmp_path / "later.done", "bad", f"touch {tmp_path / 'later.ran'}"),
    ])
    out = io.StringIO()
    with pytest.raises(SeqKDError, match=r"step 'bad' failed; its log: .*logs/bad\.log"):
        Runner(read_plan(plan), jobs=2, out=out).run()
    text = out.getvalue()
    assert "bad: FAILED after" in text and "(exit status 3)" in text
    assert "    line one" in text and "    the reason" in text  # the log's last lines
    assert not (tmp_path / "bad.done").exists() and not (tmp_path / "later.ran").exists()
    # the step running beside it was stopped, and is not marked done (a rerun redoes it)
    assert not (tmp_path / "slow.finished").exists() and not (tmp_path / "slow.done").exists()
    assert (tmp_path / "logs" / "bad.log").read_text().splitlines()[1:] == ["line one", "the reason"]


def test_steps_without_output_run_every_time(tmp_path):
    count = tmp_path / "count"
    plan = write_plan(tmp_path, [("report", "-", "-", f"echo x >> {count}")])
    run(plan)
    run(plan)
    assert count.read_text() == "x\nx\n" and not os.path.exists("-")


@pytest.mark.parametrize("line, message", [
    ("a\tout\tlog\t-\t0", r"plan.tsv:1: 5 tab-separated fields, expected 6"),
    ("a\tout\tlog\tz\t0\ttrue", r"plan.tsv:1: step 'a' comes after 'z', which is not an earlier step"),
    ("a\tout\tlog\t-\tmany\ttrue", r"plan.tsv:1: threads 'many' is not a number"),
    ("a\tout\tlog\t-\t0\ttrue\na\tout\tlog\t-\t0\ttrue", r"plan.tsv:2: step 'a' appears twice"),
])
def test_malformed_plans_are_refused_with_the_line(tmp_path, line, message):
    path = tmp_path / "plan.tsv"
    path.write_text(line + "\n")
    with pytest.raises(SeqKDError, match=message):
        read_plan(path)

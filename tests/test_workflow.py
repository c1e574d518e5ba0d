"""The recipes' step runner: dependency order, steps at the same time, resume, failures."""

import io
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback

import pytest

import toydata
from fairseq_seqkd.errors import SeqKDError, StoppedEarly
from fairseq_seqkd.workflow import HANDLED, Runner, Step, critical_path, main, read_plan


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
        ("bad", tmp_path / "bad.done", "-", "echo line one; echo the reason >&2; exit 2"),
        ("later", tmp_path / "later.done", "bad", f"touch {tmp_path / 'later.ran'}"),
    ])
    out = io.StringIO()
    with pytest.raises(SeqKDError, match=r"step 'bad' failed; its log: .*logs/bad\.log"):
        Runner(read_plan(plan), jobs=2, out=out).run()
    text = out.getvalue()
    assert "bad: FAILED after" in text and "(exit status 2)" in text
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


# What a run cost (its last line): the steps' CPU time, the critical path, multiples of a unit step. Loose bounds:
# the tests share a busy 2-core machine.

def burn(seconds):
    """A python process that burns ``seconds`` of its own CPU time (process_time), whatever the load."""
    code = f"import time; t = time.process_time(); exec('while time.process_time() - t < {seconds}: pass')"
    return f"{shlex.quote(sys.executable)} -I -S -c {shlex.quote(code)}"


def test_cpu_seconds_count_what_a_steps_shell_waited_for_and_not_sleeping(tmp_path):
    plan = write_plan(tmp_path, [
        # a subshell's child, and a background child the shell waits for
        ("burn", tmp_path / "burn.done", "-", f"echo start; ( {burn(0.3)} ); {burn(0.2)} & wait"),
        ("sleep", tmp_path / "sleep.done", "-", "sleep 0.8"),
    ])
    out = io.StringIO()
    runner = Runner(read_plan(plan), jobs=2, out=out)
    runner.run()
    assert 0.5 <= runner.cpu["burn"] < 0.5 + 2.0  # python's start-up on top
    assert runner.cpu["sleep"] < 0.2 <= 0.8 <= runner.seconds["sleep"]
    cost = runner.cost
    assert cost.cpu == pytest.approx(runner.cpu["burn"] + runner.cpu["sleep"]) and cost.steps == 2
    assert cost.unit_seconds is None and "x" not in out.getvalue().splitlines()[-1].split(";")[0]
    assert re.search(rf"; steps' CPU {cost.cpu:.0f} s; critical path \d+ s: (burn|sleep); all 2 steps done$",
                     out.getvalue().splitlines()[-1])


def diamond(folder, b=0.9, c=0.1):
    """a -> b, a -> c, (b, c) -> d, each step sleeping its seconds (a and d 0.2)."""
    return write_plan(folder, [
        ("a", folder / "a.done", "-", "sleep 0.2"),
        ("b", folder / "b.done", "a", f"sleep {b}"),
        ("c", folder / "c.done", "a", f"sleep {c}"),
        ("d", folder / "d.done", "b,c", "sleep 0.2"),
    ])


def test_the_critical_path_of_a_diamond_and_multiples_of_the_unit_step(tmp_path):
    out = io.StringIO()
    runner = Runner(read_plan(diamond(tmp_path)), jobs=2, out=out, unit="b")
    runner.run()
    seconds, cost = runner.seconds, runner.cost
    assert cost.chain == ["a", "b", "d"] and cost.before == 0
    assert cost.path == pytest.approx(seconds["a"] + seconds["b"] + seconds["d"])
    assert 1.3 <= cost.path < 1.3 + 3.0 and cost.path >= seconds["a"] + seconds["c"] + seconds["d"]
    assert cost.path <= cost.wall
    # every figure as a multiple of step b's duration
    assert cost.unit == "b" and cost.unit_seconds == seconds["b"] >= 0.9
    assert cost.times(cost.wall) == pytest.approx(cost.wall / seconds["b"])
    line = out.getvalue().splitlines()[-1]
    assert line.endswith(
        f"  wall {cost.wall:.0f} s ({cost.wall / seconds['b']:.1f}x 'b': {seconds['b']:.0f} s); "
        f"steps' CPU {cost.cpu:.0f} s ({cost.cpu / seconds['b']:.1f}x); "
        f"critical path {cost.path:.0f} s ({cost.path / seconds['b']:.1f}x): a -> b -> d; all 4 steps done"), line


def test_critical_path_weights_steps_by_their_seconds_and_steps_done_before_by_nothing():
    steps = [Step(n, f"{n}.done", f"{n}.log", after, 0, "true")
             for n, after in (("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", []))]
    assert critical_path(steps, dict(a=1, b=5, c=2, d=1, e=6)) == (7, ["a", "b", "d"])
    assert critical_path(steps, dict(a=1, b=2, c=5, d=1, e=6)) == (7, ["a", "c", "d"])
    assert critical_path(steps, dict(a=1, b=2, c=5, d=1, e=8)) == (8, ["e"])
    # a (done before) counts 0 s and is left out of the chain
    assert critical_path(steps, dict(b=2, c=5, d=1, e=1)) == (6, ["c", "d"])
    assert critical_path(steps, {}) == (0, [])


def test_a_unit_step_done_before_gives_absolute_figures_only(tmp_path, capsys):
    timings = tmp_path / "timings.txt"
    plan = write_plan(tmp_path, [
        ("teacher", tmp_path / "teacher.done", "-", "sleep 0.3"),
        ("student", tmp_path / "student.done", "teacher", "sleep 0.1"),
        ("report", "-", "student", "true"),
    ])
    argv = [str(plan), "--unit-step", "teacher", "--timings", str(timings)]
    main(argv)
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"  wall \d+ s \(\d+\.\dx 'teacher': \d+ s\); steps' CPU \d+ s \(\d+\.\dx\); critical path \d+ s "
                     r"\(\d+\.\dx\): teacher -> student -> report; all 3 steps done$", last), last
    assert timings.read_text().splitlines()[-1] == "# " + last.split("  ", 2)[-1].lstrip()
    # the teacher is done: the student and the report run again, without multiples
    (tmp_path / "student.done").unlink()
    main(argv)
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.search(r"  wall \d+ s; steps' CPU \d+ s; critical path \d+ s \(1 step\(s\) done before this run count "
                     r"0 s\): student -> report; no multiples: 'teacher' did not run in this invocation; all 3 steps "
                     r"done$", last), last
    lines = timings.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines[-3:-1]] == ["student", "report"]
    assert lines[-1] == "# " + last.split("  ", 2)[-1].lstrip()
    assert "no multiples" in lines[-1]
    # a unit step the plan does not have: one line, before anything runs
    with pytest.raises(SystemExit) as refused:
        main([str(plan), "--unit-step", "train teacher"])
    assert refused.value.code == "error: --unit-step 'train teacher': the plan has no step of that name"
    assert "steps to run" not in capsys.readouterr().out


# Kills, signals and reruns. The runner runs in a forked copy of this process (``python -m
# fairseq_seqkd.workflow`` would spend seconds importing fairseq); its steps spawn children of their own, whose
# pids they write to a file, and no process of a stopped run may survive.

GRACE = 1.5


def alive(pid):
    """Process ``pid`` exists and is not a zombie (one that has ended and only waits to be reaped)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def wait_for_pids(path, count, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            pids = [int(p) for p in path.read_text().split()]
            if len(pids) >= count:
                return pids
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} pids after {timeout} s")


class Forked:
    """``main(argv)`` in a forked child: its pid, exit code, stdout and stderr (files in ``folder``)."""

    def __init__(self, argv, folder, name="runner", ignore=()):
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        self.code = None
        self.pid = os.fork()
        if self.pid == 0:
            code = 99
            try:
                for fd, path in ((1, self.out), (2, self.err)):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                # The signals the runner handles start as a foreground command gets them, whatever started
                # pytest (under nohup SIGHUP is ignored, in a background job SIGINT: the runner would keep them
                # ignored) ...
                for signum in HANDLED:
                    signal.signal(signum, signal.SIG_DFL)
                for signum in ignore:  # ... then those a test ignores, as nohup does
                    signal.signal(signum, signal.SIG_IGN)
                main(argv)
                code = 0
            except SystemExit as e:
                if isinstance(e.code, str):
                    sys.stderr.write(e.code + "\n")
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > deadline:
                raise AssertionError(f"the runner has not ended after {timeout} s")
            else:
                time.sleep(0.05)
        return self.code

    def kill(self):
        if self.code is None:
            os.kill(self.pid, signal.SIGKILL)
            self.wait()


@pytest.fixture
def cleanup():
    """Runners and pid files to clean up whatever the test's outcome (a failing test leaves no sleeps)."""
    runners, pid_files = [], []
    yield runners, pid_files
    for runner in runners:
        runner.kill()
    for path in pid_files:
        for pid in (int(p) for p in path.read_text().split()) if path.exists() else ():
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def stubborn(pids):
    """A step that ignores SIGTERM, SIGHUP and SIGINT, and so does its child: only SIGKILL stops them."""
    return f"trap '' TERM HUP INT; sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait"


def family_plan(folder, quick=False):
    """Two steps that spawn children (one of them stubborn) and a step after both; ``quick``: the same
    steps, ending at once."""
    pids = folder / "pids"
    family = (f"sleep 300 & echo $! >> {pids}; {shlex.quote(sys.executable)} -c 'import time; time.sleep(300)' "
              f"& echo $! >> {pids}; echo $$ >> {pids}; wait")
    return write_plan(folder, [
        ("family", folder / "family.done", "-", "true" if quick else family),
        ("stubborn", folder / "stubborn.done", "-", "true" if quick else stubborn(pids)),
        ("after", folder / "after.done", "family,stubborn", f"touch {folder / 'after.ran'}"),
    ])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_runner_stops_every_process_of_the_run_and_a_rerun_completes(tmp_path, cleanup, signum):
    runners, pid_files = cleanup
    plan = family_plan(tmp_path)
    pid_files.append(tmp_path / "pids")
    runner = Forked([str(plan), "--jobs", "2", "--grace", str(GRACE)], tmp_path)
    runners.append(runner)
    pids = wait_for_pids(tmp_path / "pids", 5)  # family: sleep, python, bash; stubborn: sleep, bash
    assert all(alive(p) for p in pids)
    os.kill(runner.pid, signum)
    start = time.monotonic()
    code = runner.wait(timeout=GRACE + 10)
    seconds = time.monotonic() - start
    assert code == 128 + signum
    name = signal.Signals(signum).name
    assert runner.err.read_text().splitlines() == [f"stopped by {name}: rerun the same command to resume"]
    assert [p for p in pids if alive(p)] == []
    assert GRACE <= seconds < GRACE + 3  # the stubborn step needed SIGKILL, after the grace period
    assert runner.out.read_text().splitlines()[-1] == f"killed with SIGKILL after {GRACE:g} s: stubborn"
    assert not any((tmp_path / f"{n}.done").exists() for n in ("family", "stubborn", "after"))
    # the same plan again (its steps now quick): every step runs, the run completes
    family_plan(tmp_path, quick=True)
    again = Forked([str(plan), "--jobs", "2"], tmp_path, name="again")
    runners.append(again)
    assert again.wait() == 0, again.err.read_text()
    assert again.out.read_text().splitlines()[0].startswith("3 of 3 steps to run")
    assert all((tmp_path / f"{n}.done").exists() for n in ("family", "stubborn", "after"))


def test_a_second_signal_kills_at_once(tmp_path, cleanup):
    runners, pid_files = cleanup
    pid_files.append(tmp_path / "pids")
    plan = write_plan(tmp_path, [("stubborn", tmp_path / "stubborn.done", "-", stubborn(tmp_path / "pids"))])
    runner = Forked([str(plan), "--grace", "60"], tmp_path)
    runners.append(runner)
    pids = wait_for_pids(tmp_path / "pids", 2)
    os.kill(runner.pid, signal.SIGTERM)
    time.sleep(1.0)  # the runner handles SIGTERM first (pending together, Python would run SIGINT's handler first)
    os.kill(runner.pid, signal.SIGINT)  # Ctrl-C while the steps get their grace period
    assert runner.wait(timeout=30) == 128 + signal.SIGTERM  # well within --grace 60: the first signal names the stop
    assert [p for p in pids if alive(p)] == []


def test_under_nohup_a_hangup_is_ignored(tmp_path, cleanup):
    runners, _ = cleanup
    go = tmp_path / "go"
    plan = write_plan(tmp_path, [("wait", tmp_path / "wait.done", "-",
                                  f"echo $$ > {tmp_path / 'started'}; until [ -e {go} ]; do sleep 0.05; done")])
    runner = Forked([str(plan)], tmp_path, ignore=(signal.SIGHUP,))
    runners.append(runner)
    wait_for_pids(tmp_path / "started", 1)
    os.kill(runner.pid, signal.SIGHUP)
    time.sleep(0.5)
    go.touch()
    assert runner.wait() == 0 and (tmp_path / "wait.done").exists()


def test_a_failing_step_stops_a_stubborn_step_beside_it_with_sigkill(tmp_path, cleanup):
    _, pid_files = cleanup
    pid_files.append(tmp_path / "pids")
    plan = write_plan(tmp_path, [
        ("stubborn", tmp_path / "stubborn.done", "-", stubborn(tmp_path / "pids")),
        ("bad", tmp_path / "bad.done", "-",
         f"until [ $(cat {tmp_path / 'pids'} 2>/dev/null | wc -l) -ge 2 ]; do sleep 0.05; done; exit 1"),
    ])
    out = io.StringIO()
    start = time.monotonic()
    with pytest.raises(SeqKDError, match="step 'bad' failed"):
        Runner(read_plan(plan), jobs=2, out=out, grace=1).run()
    assert time.monotonic() - start < 1 + 5
    pids = wait_for_pids(tmp_path / "pids", 2, timeout=0)
    assert [p for p in pids if alive(p)] == []
    assert out.getvalue().splitlines()[-1] == "killed with SIGKILL after 1 s: stubborn"


def test_exit_status_3_is_a_deliberate_stop_not_done_and_not_a_failure(tmp_path, capsys):
    plan = write_plan(tmp_path, [
        ("slow", tmp_path / "slow.done", "-", f"sleep 30; touch {tmp_path / 'slow.finished'}"),
        ("distill", tmp_path / "distill.done", "-", f"echo half > {tmp_path / 'distill.out'}; exit 3"),
        ("later", tmp_path / "later.done", "distill", f"touch {tmp_path / 'later.ran'}"),
    ])
    out = io.StringIO()
    with pytest.raises(StoppedEarly, match=r"step 'distill' stopped early on purpose; rerun the same command"):
        Runner(read_plan(plan), jobs=2, out=out).run()
    lines = out.getvalue().splitlines()
    assert re.search(r"  distill: STOPPED \(exit status 3\) after \d+ s: not done; rerun to continue$", lines[-1])
    assert "FAILED" not in out.getvalue()
    assert not (tmp_path / "distill.done").exists() and not (tmp_path / "later.ran").exists()
    assert not (tmp_path / "slow.finished").exists() and not (tmp_path / "slow.done").exists()
    # the command line: exit status 3 too, and one line
    (tmp_path / "plan2.tsv").write_text(plan.read_text().split("\n", 1)[1])  # without the slow step
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "plan2.tsv")])
    assert stopped.value.code == 3
    assert capsys.readouterr().err.splitlines() == [
        f"stopped: step 'distill' stopped early on purpose; rerun the same command to continue; its log: "
        f"{tmp_path / 'logs' / 'distill.log'}"]
    assert not (tmp_path / "distill.done").exists()


def test_a_step_killed_by_sigkill_is_not_done(tmp_path):
    plan = write_plan(tmp_path, [("victim", tmp_path / "victim.done", "-",
                                  f"echo started > {tmp_path / 'partial'}; kill -KILL $$; echo never")])
    out = io.StringIO()
    with pytest.raises(SeqKDError, match="step 'victim' failed"):
        Runner(read_plan(plan), out=out).run()
    assert re.search(r"victim: FAILED after \d+ s \(killed by SIGKILL\)", out.getvalue())
    assert not (tmp_path / "victim.done").exists() and (tmp_path / "partial").exists()


def test_one_runner_per_plan(tmp_path, cleanup):
    runners, pid_files = cleanup
    pid_files.append(tmp_path / "pids")
    plan = write_plan(tmp_path, [("long", tmp_path / "long.done", "-", f"echo $$ >> {tmp_path / 'pids'}; sleep 300")])
    original = plan.read_text()
    first = Forked([str(plan)], tmp_path)
    runners.append(first)
    wait_for_pids(tmp_path / "pids", 1)
    new, other = tmp_path / "new.tsv", f"other\t{tmp_path / 'other.done'}\t{tmp_path / 'other.log'}\t-\t0\ttrue\n"
    new.write_text(other)
    with pytest.raises(SystemExit) as refused:
        main([str(plan), "--new-plan", str(new)])
    assert refused.value.code == (f"error: {plan}: another runner (pid {first.pid}) is running this plan; wait "
                                  f"for it to end, or stop it with: kill {first.pid}")
    assert plan.read_text() == original and not new.exists() and not (tmp_path / "other.done").exists()
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait() == 128 + signal.SIGTERM
    # once it has ended, a new plan takes the place of the old one and runs
    new.write_text(other)
    main([str(plan), "--new-plan", str(new)])
    assert plan.read_text() == other and not new.exists() and (tmp_path / "other.done").exists()


def test_steps_of_a_runner_killed_by_sigkill_block_a_rerun_and_are_not_done(tmp_path, cleanup):
    runners, pid_files = cleanup
    pid_files.append(tmp_path / "pids")
    quick = tmp_path / "quick"
    plan = write_plan(tmp_path, [("long", tmp_path / "long.done", "-",
                                  f"[ -e {quick} ] && exit 0; echo $$ >> {tmp_path / 'pids'}; sleep 300 & wait")])
    first = Forked([str(plan)], tmp_path)
    runners.append(first)
    (group,) = wait_for_pids(tmp_path / "pids", 1)
    os.kill(first.pid, signal.SIGKILL)  # nothing can be forwarded: the step keeps running
    assert first.wait() == -signal.SIGKILL and alive(group)
    rerun = Forked([str(plan)], tmp_path, name="rerun")
    runners.append(rerun)
    assert rerun.wait() == 1
    assert rerun.err.read_text().splitlines() == [
        f"error: {plan}: steps of an earlier runner that was killed are still running (process groups {group}); "
        f"wait for them, or stop them with: kill -- -{group}"]
    os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "long.done").exists()
    quick.touch()
    last = Forked([str(plan)], tmp_path, name="last")
    runners.append(last)
    assert last.wait() == 0, last.err.read_text()
    assert last.out.read_text().startswith("1 of 1 steps to run") and (tmp_path / "long.done").exists()


STUB = r"""#!/usr/bin/env bash
# a stand-in for a tool of the recipe: records its arguments (one line, separated by \x1f)
(IFS=$'\x1f'; echo "$(basename "$0")"$'\x1f'"$*") >> "$STUB_LOG"
if [ -n "${STUB_SLEEP:-}" ] && [ "$(basename "$0")" = fairseq-train ]; then
  echo $$ >> "$STUB_PIDS"; sleep 300 & echo $! >> "$STUB_PIDS"; wait
fi
"""


@pytest.mark.slow  # two starts of the runner, which imports fairseq (seconds each, more on a busy CPU)
def test_a_recipe_is_one_runner_that_forwards_signals_and_refuses_a_second_one(tmp_path, cleanup):
    """examples/bible/run.sh with stand-ins for fairseq-train and the seqkd-* tools: the recipe's process is
    the runner (SIGTERM to it stops the trainings), and a second recipe on the same WORKDIR refuses without
    touching the running plan."""
    runners, pid_files = cleanup
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("fairseq-train", "seqkd-prepare", "seqkd-distill", "seqkd-prune", "seqkd-eval", "seqkd-report"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    workdir = tmp_path / "work"
    env = dict(os.environ, PATH=f"{stubs}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable,
               STUB_LOG=str(tmp_path / "calls"), STUB_PIDS=str(tmp_path / "pids"), STUB_SLEEP="1")
    pid_files.append(tmp_path / "pids")
    command = ["bash", os.path.join(toydata.REPO, "examples", "bible", "run.sh"), "--preset", "tiny", "--workdir",
               str(workdir), "--src", "c.xx", "--tgt", "c.yy", "--src-lang", "xx", "--tgt-lang", "yy"]
    first = subprocess.Popen(command, env=env, cwd=toydata.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        pids = wait_for_pids(tmp_path / "pids", 4, timeout=60)  # teacher and baseline: bash and sleep each
        plan = (workdir / "plan.tsv").read_text()
        second = subprocess.run(command, env=env, cwd=toydata.REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"error: {workdir / 'plan.tsv'}: another runner (pid {first.pid}) is running this plan; wait for it "
            f"to end, or stop it with: kill {first.pid}"]  # the recipe's own pid: it became the runner
        assert (workdir / "plan.tsv").read_text() == plan
        assert not [p for p in os.listdir(workdir) if p.startswith(".plan")]  # its plan: removed
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=30)
        assert first.returncode == 128 + signal.SIGTERM
        assert err.splitlines()[-1] == "stopped by SIGTERM: rerun the same command to resume"
        assert [p for p in pids if alive(p)] == []
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    steps = {}
    for line in plan.splitlines():
        name, _, _, _, _, step = line.split("\t")
        steps[name] = shlex.split(step)
    assert "--resume" in steps["train.seqkd data"] and "--resume" in steps["train.inter data"]
    report = steps["report"]
    assert report[report.index("--teacher") + 1] == "Teacher 1x32"
    assert report[report.index("--baseline") + 1] == "Baseline 1x32"

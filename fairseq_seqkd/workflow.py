"""Run a recipe's steps in dependency order, several at a time, with one line of output per step.

The recipes (``examples/pipeline.sh``) write a *plan*: a text file with one step per line, six
tab-separated fields::

    NAME  OUTPUT  LOG  AFTER  THREADS  COMMAND

``OUTPUT`` is the file that marks the step as done (created empty after the command succeeds if the
command does not write it itself; ``-``: a step that runs every time, such as a report), ``LOG`` where
the step's own output goes, ``AFTER`` the names of the steps it needs (comma-separated, ``-`` for none),
``THREADS`` the CPU threads it may use (0: the machine's cores divided by the number of steps run at
once) and ``COMMAND`` a shell command line. A step whose
output exists is done already, so running a plan again resumes it. A command that writes ``OUTPUT``
itself must write it last and atomically; any other step's ``OUTPUT`` is a marker the runner creates only
after the command exited with status 0.

Independent steps run at the same time (``jobs``). On a 2-core CPU, two one-thread processes train
small LSTMs in about the time one of them takes with two threads (the per-step overhead of such models
does not parallelise), so the demo runs its teacher beside its baseline, and its students beside each
other. Each step prints one line when it ends (elapsed time of the run, steps done out of all, its
name, how long it took); a failing step stops the run and shows the last lines of its log. A step that
exits with status 3 (:data:`~fairseq_seqkd.errors.EXIT_STOPPED`, e.g. ``seqkd-distill
--stop-after-batches``) stopped early on purpose: it is not marked done, and the run stops with status 3.

Kills, signals and reruns. Every step runs in its own process group (session). SIGTERM, SIGHUP and
SIGINT (Ctrl-C) to the runner are forwarded to the process group of every running step; the groups still
alive ``--grace`` seconds later (default 10) get SIGKILL, and the runner exits with status 128 + the
signal's number and one line (``stopped by SIGTERM: rerun the same command to resume``); a second signal
during the grace period kills at once. A failing or stopped step stops the steps beside it the same way
(SIGTERM, then SIGKILL). Nothing that was stopped or killed is marked done, so rerunning the same command
redoes exactly the steps that had not finished (fairseq-train resumes from its checkpoint_last.pt,
seqkd-distill --resume from its journal). Only one runner at a time works on a plan: it holds an
exclusive lock (``PLAN.lock``, fcntl.flock) that its steps inherit, so a second runner on the same plan,
or a rerun while steps of a runner killed by SIGKILL (which cannot forward anything) are still running,
refuses with one line naming the processes to wait for or stop. ``--new-plan FILE`` replaces the plan by
FILE only once the lock is held, so a recipe started twice never rewrites the plan of a run in progress.
Signals ignored when the runner starts (``nohup``: SIGHUP) stay ignored. Exit status: 0 every step done,
1 a failing step or an error, 3 a step stopped early on purpose, 128 + N stopped by signal N.

What a run cost, in a unit that does not move with the machine. Machines differ by up to 2x in speed, so a
run's wall time alone cannot be compared from one machine to the next. When every step is done, the last
line gives, beside the wall time, the CPU time of the steps (user + system of each step's whole process
tree: the rusage of its reaped process, which includes every descendant it waited for; a process a step
leaves running in the background is not counted) and the critical path: the longest chain of dependent
steps (``AFTER``), in the measured wall seconds of the steps run by this invocation (a step done before it
counts 0 s). With ``--unit-step NAME`` (the recipes: ``train teacher``), each figure is also given as a
multiple of that step's duration in the same run, if it ran in this invocation (otherwise the absolute
figures only)::

    18:22  wall 1102 s (2.6x 'train teacher': 427 s); steps' CPU 1985 s (4.6x); critical path 905 s (2.1x):
    train teacher -> train.seqkd data -> train seq-kd -> eval seq-kd; all 18 steps done

(one line). ``--timings`` gets the same line, as a comment (``# ...``), after the steps' own lines.
"""

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from fairseq_seqkd.textio import pid_running
from fairseq_seqkd.errors import EXIT_STOPPED, SeqKDError, StoppedEarly, exit_on_error

FIELDS = 6
TAIL_LINES = 15
#: seconds the steps get to end after the runner forwarded a signal, before SIGKILL
GRACE = 10.0
#: the signals the runner forwards to its steps before it stops
HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


@dataclass(eq=False)
class Step:
    name: str
    output: str
    log: str
    after: List[str]
    threads: int
    command: str


class Interrupted(Exception):
    """The runner received ``signum`` (one of :data:`HANDLED`) and stopped its steps."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum

    def __str__(self):
        return f"stopped by {signal.Signals(self.signum).name}: rerun the same command to resume"


@dataclass
class Cost:
    """What the steps run by one invocation cost: ``wall`` seconds from the runner's start to its end, ``cpu``
    (user + system CPU seconds of the steps' process trees, summed), the critical path (``chain``, the names of
    the steps on it that ran, and ``path``, its seconds; ``before`` steps were done before this invocation and
    count 0 s), and ``unit_seconds`` the duration of the step named ``unit`` (None: no unit step, or it did
    not run in this invocation: absolute figures only)."""

    steps: int
    wall: float
    cpu: float
    path: float
    chain: List[str]
    before: int = 0
    unit: Optional[str] = None
    unit_seconds: Optional[float] = None

    def times(self, seconds):
        """``seconds`` as a multiple of the unit step (None without one)."""
        return None if self.unit_seconds is None else seconds / max(self.unit_seconds, 1e-9)

    def __str__(self):
        def notes(seconds, *more, of=""):
            multiple = [] if self.unit_seconds is None else [f"{self.times(seconds):.1f}x{of}"]
            words = multiple + [m for m in more if m]
            return f" ({'; '.join(words)})" if words else ""

        unit = f" {self.unit!r}: {self.unit_seconds:.0f} s" if self.unit_seconds is not None else ""
        before = f"{self.before} step(s) done before this run count 0 s" if self.before else ""
        text = (f"wall {self.wall:.0f} s{notes(self.wall, of=unit)}; steps' CPU {self.cpu:.0f} s{notes(self.cpu)}; "
                f"critical path {self.path:.0f} s{notes(self.path, before)}: {' -> '.join(self.chain)}")
        if self.unit and self.unit_seconds is None:
            text += f"; no multiples: {self.unit!r} did not run in this invocation"
        return text


def critical_path(steps, seconds):
    """The longest chain of dependent steps (by ``after``) of ``steps`` (in plan order), a step weighing
    ``seconds[name]`` (0 if absent: done before): its seconds and the names on it that weigh something (those
    in ``seconds``), first to last. Ties go to the earlier step in the plan."""
    best, previous = {}, {}
    for step in steps:
        before = max(step.after, key=lambda a: best[a], default=None)
        best[step.name] = seconds.get(step.name, 0.0) + (best[before] if before else 0.0)
        previous[step.name] = before
    end = max((s.name for s in steps), key=lambda n: best[n], default=None)
    chain, name = [], end
    while name is not None:
        if name in seconds:
            chain.append(name)
        name = previous[name]
    return (best[end] if end else 0.0), chain[::-1]


def read_plan(path):
    """The steps of a plan file, checked: unique names, known dependencies listed before their users."""
    steps, names = [], set()
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != FIELDS:
                raise SeqKDError(f"{path}:{number}: {len(fields)} tab-separated fields, expected {FIELDS}")
            name, output, log, after, threads, command = fields
            after = [] if after == "-" else after.split(",")
            if name in names:
                raise SeqKDError(f"{path}:{number}: step {name!r} appears twice")
            unknown = [a for a in after if a not in names]
            if unknown:
                raise SeqKDError(f"{path}:{number}: step {name!r} comes after {unknown[0]!r}, which is not "
                                 f"an earlier step")
            try:
                threads = int(threads)
            except ValueError:
                raise SeqKDError(f"{path}:{number}: threads {threads!r} is not a number") from None
            names.add(name)
            steps.append(Step(name, output, log, after, threads, command))
    return steps


def clock(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


def tail(path, lines=TAIL_LINES):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError:
        return []


def exit_status(code):
    """A Popen return code in words: ``exit status N`` or ``killed by SIGNAME``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def group_alive(pgid):
    """Whether a process of group ``pgid`` still runs; zombies waiting to be reaped do not count (Linux:
    from /proc; elsewhere any member, zombie or not, counts)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                state, _, group = f.read().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


def signal_group(pgid, signum):
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class PlanLock:
    """One runner per plan: an exclusive ``flock`` on ``PLAN.lock``, released when the runner and the steps
    it started (which inherit it) have all ended. The file names the runner's pid and its steps' process
    groups, for the message of a runner that is refused."""

    def __init__(self, plan):
        self.plan, self.path, self.fd = plan, plan + ".lock", None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = os.read(fd, 65536).decode("utf-8", "replace")
            os.close(fd)
            raise SeqKDError(self.refusal(holders)) from None
        self.fd = fd
        self.write({})
        return self

    def refusal(self, holders):
        runner, groups = None, []
        for line in holders.splitlines():
            kind, _, rest = line.partition(" ")
            number = rest.split(" ", 1)[0]
            if number.isdigit():
                if kind == "runner":
                    runner = int(number)
                elif kind == "step" and group_alive(int(number)):
                    groups.append(number)
        if runner is not None and pid_running(runner):
            return (f"{self.plan}: another runner (pid {runner}) is running this plan; wait for it to end, or "
                    f"stop it with: kill {runner}")
        if groups:
            return (f"{self.plan}: steps of an earlier runner that was killed are still running (process groups "
                    f"{' '.join(groups)}); wait for them, or stop them with: kill -- " +
                    " ".join(f"-{g}" for g in groups))
        return (f"{self.plan}: another process holds {self.path} (one started by an earlier run?); wait for it to "
                f"end (fuser -v {self.path} names it)")

    def write(self, running):
        """Record the runner's pid and the process group of each running step (``running``: step -> pid)."""
        text = f"runner {os.getpid()}\n" + "".join(f"step {pid} {step.name}\n" for step, pid in running.items())
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode("utf-8"), 0)

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Runner:
    """Runs the steps of a plan, ``jobs`` at a time, in plan order among those that are ready.

    ``grace``: seconds the steps get to end after SIGTERM (or a forwarded signal) before SIGKILL. ``lock``:
    the :class:`PlanLock` held, which the steps inherit and which names them."""

    def __init__(self, steps, jobs=1, timings=None, out=None, cpus=None, grace=GRACE, lock=None, unit=None):
        self.steps, self.jobs, self.timings, self.out = steps, max(1, jobs), timings, out or sys.stdout
        self.cpus = cpus or os.cpu_count() or 1
        self.grace, self.lock = grace, lock
        if unit is not None and unit not in {s.name for s in steps}:
            raise SeqKDError(f"--unit-step {unit!r}: the plan has no step of that name")
        self.unit = unit
        #: of the steps finished by this invocation: wall seconds and CPU seconds (user + system of the step's
        #: process and every descendant it waited for); the run's :class:`Cost` once every step is done
        self.seconds: Dict[str, float] = {}
        self.cpu: Dict[str, float] = {}
        self.cost: Optional[Cost] = None
        self.live = self.out.isatty()
        self.start = time.monotonic()
        self.received = None  # the first signal received (handle_signals)
        self.stopping = self.hurry = False

    def write(self, text):
        """Write to ``out``; once it fails (a terminal gone with a dropped SSH session), write nothing more:
        the steps' logs are in their files."""
        if self.out is None:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:
            self.out = None

    def say(self, text):
        self.write(("\r\033[K" if self.live else "") + text + "\n")

    def status(self, running):
        if self.live and running:
            now = time.monotonic()
            parts = ", ".join(f"{s.name} {clock(now - t)}" for s, (_, t) in running.items())
            self.write(f"\r\033[K{clock(now - self.start):>7}  running: {parts}"[:200])

    def on_signal(self, signum, frame):
        """A handled signal: noted, and acted on by the loop (a second one during stop(): SIGKILL at once)."""
        if self.received is not None or self.stopping:
            self.hurry = True
        if self.received is None:
            self.received = signum

    def handle_signals(self):
        """Install :meth:`on_signal` for :data:`HANDLED`, except for signals ignored already (``nohup``: SIGHUP;
        a background job: SIGINT), which stay ignored; returns the previous handlers (for restore_signals)."""
        return {s: signal.signal(s, self.on_signal) for s in HANDLED if signal.getsignal(s) != signal.SIG_IGN}

    @staticmethod
    def restore_signals(previous):
        for s, handler in previous.items():
            signal.signal(s, handler)

    def check_signal(self):
        if self.received is not None:
            raise Interrupted(self.received)

    def nap(self, seconds):
        """Sleep ``seconds``, or less if a signal arrives."""
        end = time.monotonic() + seconds
        while self.received is None and time.monotonic() < end:
            time.sleep(0.05)

    def launch(self, step):
        os.makedirs(os.path.dirname(os.path.abspath(step.log)), exist_ok=True)
        threads = str(step.threads or max(1, self.cpus // self.jobs))
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        with open(step.log, "w", encoding="utf-8") as log:
            log.write(f"$ {step.command}\n")
            log.flush()
            return subprocess.Popen(["bash", "-c", step.command], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                    pass_fds=(self.lock.fd,) if self.lock else ())

    def reap(self, step, proc):
        """The exit code of ``step``'s process if it has ended (None while it runs). It is reaped with
        ``wait4``, whose rusage is the CPU time of the step's whole process tree (the descendants it waited
        for included), kept in ``self.cpu``."""
        if proc.returncode is not None:
            return proc.returncode
        try:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: its CPU time is lost
            return proc.poll()
        if pid == 0:
            return None
        proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu[step.name] = usage.ru_utime + usage.ru_stime
        return proc.returncode

    def note_running(self, running):
        if self.lock:
            self.lock.write({step: proc.pid for step, (proc, _) in running.items()})

    def run(self):
        """Run every step not done yet; SeqKDError names the first step that fails, StoppedEarly the first
        that stopped early on purpose (exit status 3), Interrupted the signal received (handle_signals)."""
        total = len(self.steps)
        done = {s.name for s in self.steps if s.output != "-" and os.path.exists(s.output)}
        todo = [s for s in self.steps if s.name not in done]
        workers = min(self.jobs, len(todo)) or 1
        self.say(f"{len(todo)} of {total} steps to run, up to {workers} at a time "
                 f"({max(1, self.cpus // self.jobs)} thread(s) each)" + (f"; {len(done)} done already" if done else ""))
        running = {}
        try:
            self.loop(todo, done, running, total)
        except BaseException as e:
            self.stop(running, e.signum if isinstance(e, Interrupted) else signal.SIGTERM)
            raise
        wall = time.monotonic() - self.start
        if not self.seconds:
            self.say(f"{clock(wall):>7}  all {total} steps done")
            return
        path, chain = critical_path(self.steps, self.seconds)
        self.cost = Cost(len(self.seconds), wall, sum(self.cpu.values()), path, chain,
                         before=total - len(self.seconds), unit=self.unit, unit_seconds=self.seconds.get(self.unit))
        self.say(f"{clock(wall):>7}  {self.cost}; all {total} steps done")
        if self.timings:
            with open(self.timings, "a", encoding="utf-8") as f:
                f.write(f"# {self.cost}; all {total} steps done\n")

    def loop(self, todo, done, running, total):
        while todo or running:
            for step in [s for s in todo if all(a in done for a in s.after)]:
                self.check_signal()
                if len(running) >= self.jobs:
                    break
                todo.remove(step)
                running[step] = (self.launch(step), time.monotonic())
                self.note_running(running)
            for step, (proc, started) in list(running.items()):
                code = self.reap(step, proc)
                if code is None:
                    continue
                seconds = time.monotonic() - started
                del running[step]
                self.note_running(running)
                self.finished(step, code, seconds, done, total)
            self.check_signal()
            if running and not any(self.reap(s, p) is not None for s, (p, _) in running.items()):
                self.status(running)
                self.nap(0.5)

    def finished(self, step, code, seconds, done, total):
        """A step's process ended with ``code``: mark it done (exit status 0 only), or stop the run."""
        prefix = f"{clock(time.monotonic() - self.start):>7}  [{len(done):>2}/{total}]  {step.name}"
        if code == EXIT_STOPPED:
            self.say(f"{prefix}: STOPPED (exit status {EXIT_STOPPED}) after {seconds:.0f} s: not done; rerun to "
                     f"continue")
            raise StoppedEarly(f"step '{step.name}' stopped early on purpose; rerun the same command to continue; "
                               f"its log: {step.log}")
        if code != 0:
            self.say(f"{prefix}: FAILED after {seconds:.0f} s ({exit_status(code)}); last lines of its log:")
            for line in tail(step.log):
                self.say(f"    {line}")
            raise SeqKDError(f"step '{step.name}' failed; its log: {step.log}")
        if step.output != "-" and not os.path.exists(step.output):
            os.makedirs(os.path.dirname(os.path.abspath(step.output)), exist_ok=True)
            open(step.output, "w").close()
        done.add(step.name)
        self.seconds[step.name] = seconds
        if self.timings:
            with open(self.timings, "a", encoding="utf-8") as f:
                f.write(f"{step.name}\t{seconds:.0f}\n")
        self.say(f"{clock(time.monotonic() - self.start):>7}  [{len(done):>2}/{total}]  "
                 f"{step.name:<44} {seconds:6.0f} s")

    def stop(self, running, signum=signal.SIGTERM):
        """Stop the steps still running: ``signum`` to each one's process group, SIGKILL to the groups still
        alive after ``grace`` seconds (at once on a second signal). Their outputs are not marked done, so a
        rerun redoes them."""
        self.stopping = True
        steps = {step: proc for step, (proc, _) in running.items()}
        for proc in steps.values():
            signal_group(proc.pid, signum)
        deadline = time.monotonic() + self.grace
        while not self.hurry and time.monotonic() < deadline:
            for proc in steps.values():
                proc.poll()  # reap the leaders that ended
            if not any(group_alive(proc.pid) for proc in steps.values()):
                break
            time.sleep(0.05)
        killed = [step.name for step, proc in steps.items() if group_alive(proc.pid)]
        for step, proc in steps.items():
            if step.name in killed:
                signal_group(proc.pid, signal.SIGKILL)
        for proc in steps.values():
            proc.wait()
        # SIGKILL is delivered asynchronously: return only once the killed groups are gone (or after 5 s)
        deadline = time.monotonic() + 5
        while any(group_alive(proc.pid) for proc in steps.values()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if killed:
            self.say(f"killed with SIGKILL after {self.grace:g} s: {', '.join(killed)}")


def print_plan(steps, out=sys.stdout):
    """``--dry-run``: every step as ``[NAME] COMMAND``, in plan order."""
    for step in steps:
        out.write(f"[{step.name}] {step.command}\n")


def take_plan(plan, new_plan=None):
    """The lock of ``plan``, held; with ``new_plan``, that file (checked) replaces ``plan`` once the lock is
    held, and is removed if another runner holds it."""
    if new_plan:
        read_plan(new_plan)
    try:
        lock = PlanLock(plan).acquire()
    except SeqKDError:
        if new_plan:
            os.remove(new_plan)
        raise
    if new_plan:
        os.replace(new_plan, plan)
    return lock


def run_plan(args):
    """Run a plan under its lock, with the handled signals forwarded to its steps (see the docstring)."""
    lock = take_plan(args.plan, args.new_plan)
    try:
        runner = Runner(read_plan(args.plan), jobs=args.jobs, timings=args.timings, grace=args.grace, lock=lock,
                        unit=args.unit_step)
        previous = runner.handle_signals()
        try:
            runner.run()
        finally:
            runner.restore_signals(previous)
    finally:
        lock.release()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fairseq_seqkd.workflow", description=__doc__.split("\n\n")[0])
    p.add_argument("plan", help="the plan file")
    p.add_argument("--jobs", type=int, default=1, help="steps run at the same time")
    p.add_argument("--timings", help="append 'NAME<TAB>SECONDS' of every finished step to this file, and at "
                                     "the end the run's cost (the last line printed) as a '# ' comment")
    p.add_argument("--unit-step", metavar="NAME",
                   help="at the end, give the run's wall time, its steps' CPU time and its critical path also as "
                        "multiples of this step's duration (the recipes: their teacher's 'train teacher'), if it "
                        "ran in this invocation")
    p.add_argument("--dry-run", action="store_true", help="print the steps' commands instead of running them")
    p.add_argument("--grace", type=float, default=GRACE, metavar="SECONDS",
                   help="on SIGTERM/SIGHUP/SIGINT (or a failing step), seconds the running steps get to end "
                        "before SIGKILL (default: %(default)g)")
    p.add_argument("--new-plan", metavar="FILE",
                   help="replace PLAN by FILE once this runner holds PLAN's lock (FILE is removed if another "
                        "runner holds it)")
    args = p.parse_args(argv)
    try:
        with exit_on_error():
            if args.dry_run:
                print_plan(read_plan(args.new_plan or args.plan))
            else:
                run_plan(args)
    except OSError as e:
        sys.exit(f"error: {e.filename}: {e.strerror}")
    except Interrupted as e:
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            sys.stderr.write(f"{e}\n")
            sys.stderr.flush()
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        sys.exit("interrupted: rerun the same command to resume")


if __name__ == "__main__":
    main()

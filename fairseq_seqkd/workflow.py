"""Run a recipe's steps in dependency order, several at a time, with one line of output per step.

The recipes (``examples/pipeline.sh``) write a *plan*: a text file with one step per line, six
tab-separated fields::

    NAME  OUTPUT  LOG  AFTER  THREADS  COMMAND

``OUTPUT`` is the file that marks the step as done (created empty after the command succeeds if the
command does not write it itself; ``-``: a step that runs every time, such as a report), ``LOG`` where the step's own output goes, ``AFTER`` the names of the
steps it needs (comma-separated, ``-`` for none), ``THREADS`` the CPU threads it may use (0: the machine's
cores divided by the number of steps run at once) and ``COMMAND`` a shell command line. A step whose
output exists is done already, so running a plan again resumes it.

Independent steps run at the same time (``jobs``). On a 2-core CPU, two one-thread processes train
small LSTMs in about the time one of them takes with two threads (the per-step overhead of such models
does not parallelise), so the demo runs its teacher beside its baseline, and its students beside each
other. Each step prints one line when it ends (elapsed time of the run, steps done out of all, its
name, how long it took); a failing step stops the run and shows the last lines of its log.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import List

from fairseq_seqkd.errors import SeqKDError

FIELDS = 6
TAIL_LINES = 15


@dataclass(eq=False)
class Step:
    name: str
    output: str
    log: str
    after: List[str]
    threads: int
    command: str


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


class Runner:
    """Runs the steps of a plan, ``jobs`` at a time, in plan order among those that are ready."""

    def __init__(self, steps, jobs=1, timings=None, out=sys.stdout, cpus=None):
        self.steps, self.jobs, self.timings, self.out = steps, max(1, jobs), timings, out
        self.cpus = cpus or os.cpu_count() or 1
        self.live = out.isatty()
        self.start = time.monotonic()

    def say(self, text):
        if self.live:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self.out.flush()

    def status(self, running):
        if self.live and running:
            now = time.monotonic()
            parts = ", ".join(f"{s.name} {clock(now - t)}" for s, (_, t) in running.items())
            self.out.write(f"\r\033[K{clock(now - self.start):>7}  running: {parts}"[:200])
            self.out.flush()

    def launch(self, step):
        os.makedirs(os.path.dirname(os.path.abspath(step.log)), exist_ok=True)
        threads = str(step.threads or max(1, self.cpus // self.jobs))
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        with open(step.log, "w", encoding="utf-8") as log:
            log.write(f"$ {step.command}\n")
            log.flush()
            return subprocess.Popen(["bash", "-c", step.command], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def run(self):
        """Run every step not done yet; SeqKDError names the first step that fails."""
        total = len(self.steps)
        done = {s.name for s in self.steps if s.output != "-" and os.path.exists(s.output)}
        todo = [s for s in self.steps if s.name not in done]
        workers = min(self.jobs, len(todo)) or 1
        self.say(f"{len(todo)} of {total} steps to run, up to {workers} at a time "
                 f"({max(1, self.cpus // self.jobs)} thread(s) each)" + (f"; {len(done)} done already" if done else ""))
        running = {}
        try:
            self.loop(todo, done, running, total)
        except BaseException:
            self.stop(running)
            raise
        self.say(f"{clock(time.monotonic() - self.start):>7}  all {total} steps done")

    def loop(self, todo, done, running, total):
        while todo or running:
            for step in [s for s in todo if all(a in done for a in s.after)]:
                if len(running) >= self.jobs:
                    break
                todo.remove(step)
                running[step] = (self.launch(step), time.monotonic())
            for step, (proc, started) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                seconds = time.monotonic() - started
                del running[step]
                if code != 0:
                    self.say(f"{clock(time.monotonic() - self.start):>7}  [{len(done):>2}/{total}]  "
                             f"{step.name}: FAILED after {seconds:.0f} s (exit status {code}); last lines of "
                             f"its log:")
                    for line in tail(step.log):
                        self.say(f"    {line}")
                    raise SeqKDError(f"step '{step.name}' failed; its log: {step.log}")
                if step.output != "-" and not os.path.exists(step.output):
                    os.makedirs(os.path.dirname(os.path.abspath(step.output)), exist_ok=True)
                    open(step.output, "w").close()
                done.add(step.name)
                if self.timings:
                    with open(self.timings, "a", encoding="utf-8") as f:
                        f.write(f"{step.name}\t{seconds:.0f}\n")
                self.say(f"{clock(time.monotonic() - self.start):>7}  [{len(done):>2}/{total}]  "
                         f"{step.name:<44} {seconds:6.0f} s")
            if running and not any(p.poll() is not None for p, _ in running.values()):
                self.status(running)
                time.sleep(0.5)

    def stop(self, running):
        """Stop the steps still running (their outputs are not marked done, so a rerun redoes them)."""
        for proc, _ in running.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc, _ in running.values():
            proc.wait()


def print_plan(steps, out=sys.stdout):
    """``--dry-run``: every step as ``[NAME] COMMAND``, in plan order."""
    for step in steps:
        out.write(f"[{step.name}] {step.command}\n")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fairseq_seqkd.workflow", description=__doc__.split("\n\n")[0])
    p.add_argument("plan", help="the plan file")
    p.add_argument("--jobs", type=int, default=1, help="steps run at the same time")
    p.add_argument("--timings", help="append 'NAME<TAB>SECONDS' of every finished step to this file")
    p.add_argument("--dry-run", action="store_true", help="print the steps' commands instead of running them")
    args = p.parse_args(argv)
    try:
        steps = read_plan(args.plan)
        if args.dry_run:
            print_plan(steps)
        else:
            Runner(steps, jobs=args.jobs, timings=args.timings).run()
    except SeqKDError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: {e.filename}: {e.strerror}")
    except KeyboardInterrupt:
        sys.exit("interrupted: rerun the same command to resume")


if __name__ == "__main__":
    main()

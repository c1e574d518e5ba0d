"""Fault injection: kill a command at seeded random moments, rerun it, compare its outputs byte for byte with
those of an uninterrupted run.

Used by tests/test_faults.py (the fast cases) and benchmarks/fault_injection.py (every stage, the whole
recipe). A *stage* is a command line run in a fixed working folder (cleared before every trial, so that the
absolute paths inside its outputs are the same in every trial) and the outputs it must produce. A *trial*
starts the command, SIGKILLs its whole process tree after a random delay (drawn from a seeded generator,
uniform over the uninterrupted run's duration), possibly several times in a row, then runs the same command
to the end and compares the outputs' fingerprints with the uninterrupted run's.

Every process a trial starts carries the environment variable ``SEQKD_FAULT_RUN`` (a fresh token per
command), so the processes of a run can be found even after their parent died and they were re-parented
(:func:`processes_of`): that is how "no process of the run survives" is checked.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

#: The run-identifying environment variable.
MARK = "SEQKD_FAULT_RUN"
NEWLINE = b"\n"

#: Files of a binarized folder that are logs, not data (fairseq-preprocess writes its own arguments,
#: including the temporary folder's name, into preprocess.log), and the recipe runner's markers.
NOT_OUTPUT = ("preprocess.log",)

#: The quality fields of a seqkd-eval JSON (speeds are measurements, not results).
QUALITY_FIELDS = ("name", "subset", "sentences", "beam", "bleu_greedy", "bleu_beam", "ppl", "p_yhat",
                  "params", "bleu_signature")


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(paths: Sequence[str], root: str = "", json_fields: Sequence[str] = QUALITY_FIELDS) -> Dict[str, str]:
    """{relative path: sha256} of the files (folders: every file below them, except logs) in ``paths``.

    A ``.json`` file whose name ends in ``eval.json`` or that lies in an ``eval`` folder counts by its
    ``json_fields`` only (its speeds are measurements). A missing path is ``<missing>``.
    """
    prints = {}
    for path in paths:
        name = os.path.relpath(path, root) if root else path
        if os.path.isdir(path):
            for folder, _dirs, files in os.walk(path):
                for f in files:
                    if f not in NOT_OUTPUT:
                        full = os.path.join(folder, f)
                        prints[os.path.relpath(full, root) if root else full] = _file_print(full, json_fields)
        elif os.path.exists(path):
            prints[name] = _file_print(path, json_fields)
        else:
            prints[name] = "<missing>"
    return prints


#: JSON outputs that record how long they took: compared without those keys.
TIMING_KEYS = {"prepare.json": ("seconds",)}


def _file_print(path, json_fields):
    name = os.path.basename(path)
    if name.endswith(".json") and os.path.basename(os.path.dirname(path)) == "eval":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return json.dumps({k: data.get(k) for k in json_fields}, sort_keys=True)
    if name in TIMING_KEYS:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return json.dumps({k: v for k, v in data.items() if k not in TIMING_KEYS[name]}, sort_keys=True)
    return _sha256(path)


def processes_of(token: str) -> List[int]:
    """The live processes (not zombies) whose environment holds ``SEQKD_FAULT_RUN=token``."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


def kill_all(token: str, sig=signal.SIGKILL, rounds=50):
    """Send ``sig`` to every process of the run until none is left (new ones may be starting)."""
    for _ in range(rounds):
        pids = processes_of(token)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"processes of run {token} survive SIGKILL: {processes_of(token)}")


def environment(env=None):
    """The environment of a stage's command: the venv's scripts first on PATH, one thread."""
    full = dict(os.environ)
    full["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full.get("PATH", "")
    full.setdefault("OMP_NUM_THREADS", "1")
    full.setdefault("PYTHONWARNINGS", "ignore")
    full.update(env or {})
    return full


@dataclass
class Started:
    proc: subprocess.Popen
    token: str
    log: str


def start(command: Sequence[str], cwd: str, env=None, log: Optional[str] = None) -> Started:
    """Start ``command`` in a new session with a fresh run token; its output goes to ``log``."""
    token = uuid.uuid4().hex
    log = log or os.path.join(cwd, f".fault-{token}.log")
    out = open(log, "ab")
    proc = subprocess.Popen(list(command), cwd=cwd, env=environment({**(env or {}), MARK: token}), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    out.close()
    return Started(proc, token, log)


def run_to_end(command, cwd, env=None, timeout=900, log=None):
    """Run ``command`` to its end; (exit status, seconds)."""
    started, t0 = start(command, cwd, env, log), time.monotonic()
    try:
        code = started.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all(started.token)
        raise AssertionError(f"{command[0]} ran past {timeout} s")
    kill_all(started.token)  # anything it left behind
    return code, time.monotonic() - t0


def run_killed(command, cwd, delay, env=None, log=None):
    """Start ``command``, SIGKILL all of its processes after ``delay`` seconds. True if it was killed, False
    if it had ended by itself before."""
    started = start(command, cwd, env, log)
    try:
        started.proc.wait(timeout=delay)
        kill_all(started.token)
        return False
    except subprocess.TimeoutExpired:
        kill_all(started.token)
        started.proc.wait()
        return True


@dataclass
class Stage:
    """A command run in ``workdir`` and the outputs it must produce.

    ``command``: the argv (the same for the first run and every rerun). ``outputs``: paths (files or
    folders) compared. ``setup(workdir)``: prepares a fresh working folder (inputs, earlier stages' outputs).
    ``phase(workdir)``: a few words on the state a kill left (e.g. "3/9 batches in the journal").
    """

    name: str
    workdir: str
    command: List[str]
    outputs: List[str]
    setup: Callable[[str], None] = lambda workdir: None
    phase: Callable[[str], str] = lambda workdir: ""
    env: Dict[str, str] = field(default_factory=dict)
    timeout: float = 900


@dataclass
class Trial:
    stage: str
    delays: List[float]
    phases: List[str]
    killed: int
    rerun_status: int
    identical: bool
    differing: List[str]


def fresh(stage: Stage):
    shutil.rmtree(stage.workdir, ignore_errors=True)
    os.makedirs(stage.workdir)
    stage.setup(stage.workdir)


def reference(stage: Stage):
    """Run the stage uninterrupted in a fresh folder; (fingerprint, seconds, busy): ``busy`` is when the stage
    started to leave something on disk (its phase first changed), as a fraction of its run."""
    fresh(stage)
    log = os.path.join(stage.workdir, ".reference.log")
    started, t0 = start(stage.command, stage.workdir, stage.env, log), time.monotonic()
    initial, busy = stage.phase(stage.workdir), None
    while started.proc.poll() is None:
        if busy is None and stage.phase(stage.workdir) != initial:
            busy = time.monotonic() - t0
        if time.monotonic() - t0 > stage.timeout:
            kill_all(started.token)
            raise AssertionError(f"{stage.name}: ran past {stage.timeout} s")
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    kill_all(started.token)
    if started.proc.returncode != 0:
        raise AssertionError(f"{stage.name}: the uninterrupted run failed (exit status {started.proc.returncode}); "
                             f"log:\n" + _tail(log))
    return fingerprint(stage.outputs, stage.workdir), seconds, (busy if busy is not None else 0.0) / seconds


def trial(stage: Stage, ref_print, ref_seconds, rng, kills=1, low=0.0, high=1.0, busy=None) -> Trial:
    """Kill the stage ``kills`` times in a row, then rerun it to the end and compare its outputs with
    ``ref_print``. The first kill comes at a delay drawn uniformly from [low, high] x ``ref_seconds``; with
    ``busy`` (from :func:`reference`), the later ones from [busy, high] x ``ref_seconds``, while the stage
    writes (a stage's start-up, imports and model loading, can be half of a short run)."""
    fresh(stage)
    log = os.path.join(stage.workdir, ".trial.log")
    delays, phases, killed = [], [], 0
    for k in range(kills):
        delay = rng.uniform(low if k == 0 or busy is None else max(low, busy), high) * ref_seconds
        delays.append(round(delay, 2))
        was_killed = run_killed(stage.command, stage.workdir, delay, stage.env, log)
        killed += was_killed
        phases.append(stage.phase(stage.workdir) if was_killed else "ended before the kill")
    code, _ = run_to_end(stage.command, stage.workdir, stage.env, stage.timeout, log)
    got = fingerprint(stage.outputs, stage.workdir)
    differing = sorted(k for k in set(got) | set(ref_print) if got.get(k) != ref_print.get(k))
    if code != 0:
        differing.append(f"rerun exit status {code}: " + _tail(log, 3).replace("\n", " | "))
    return Trial(stage.name, delays, phases, killed, code, code == 0 and not differing, differing)


def distill_phase(prefix):
    """A Stage.phase for seqkd-distill with output prefix ``prefix``: its journals' lines, what is written."""
    folder, base = os.path.dirname(prefix), os.path.basename(prefix)

    def phase(_workdir):
        parts = []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(base + ".shard-") and name.endswith(".jsonl"):
                with open(path, "rb") as f:
                    data = f.read()
                lines, torn = data.count(NEWLINE), " + a torn line" if data and not data.endswith(NEWLINE) else ""
                parts.append(f"journal {name[len(base) + 7:-6]}: {lines} lines{torn}")
            elif name.startswith(base + ".") and not name.endswith((".jsonl", ".lock")):
                parts.append(f"{name[len(base):]} written")
            elif name.endswith(".tmp"):
                parts.append("binarizing")
        return "; ".join(parts) or "before the journal"
    return phase


def _tail(path, lines=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "\n".join(f.read().splitlines()[-lines:])
    except OSError:
        return ""

"""The real recipe runs of tests/test_recipe.py, started in the background as soon as pytest knows a selected test
needs them (conftest.py, pytest_collection_finish), so that they run beside the rest of the suite instead of
after it: two recipes on the tiny preset are ~100 short processes, most of whose CPU time is their imports, and
the rest of the suite keeps about one of two cores busy.

- "study": the Bible recipe's multi-seed study (``--seeds 1 2``) on a 600-pair stand-in corpus;
- "wmt14_en_de": the WMT14 paper recipe on a stand-in for the unpacked statmt.org archives (it has every step of
  the IWSLT15 recipe, whose own steps and plan tests/test_recipe.py checks, and a 2x300 student of its own).

Other modules register runs of their own in STARTERS (tests/test_docs.py: the docs' runnable blocks). Each run is
started once per session; ``Runs.wait(name)`` returns its folder and CompletedProcess.
"""

import contextlib
import os
import pathlib
import re
import shlex
import signal
import subprocess
import threading
import time

import toydata

RUN = os.path.join(toydata.REPO, "examples", "bible", "run.sh")

#: What the real runs' seqkd-eval appends to the preset's options (the last occurrence wins): one short speed
#: measurement instead of 3 of at least a second each (6-8 s of every evaluation's ~15 s, 29 evaluations). The
#: speed options are tested in tests/test_eval.py; the presets' EVAL options are parsed in the plans' tests.
EVAL_WRAPPER = ["--speed-repeats", "1", "--speed-min-seconds", "0", "--speed-warmup", "0"]


def real_run_env(folder):
    """The environment of the real recipe runs: the venv's tools first, seqkd-eval behind EVAL_WRAPPER (a
    wrapper written to ``folder``)."""
    os.makedirs(folder, exist_ok=True)
    tool = os.path.join(folder, "seqkd-eval")
    with open(tool, "w") as f:
        f.write(f'#!/usr/bin/env bash\nexec {shlex.quote(os.path.join(toydata.VENV_BIN, "seqkd-eval"))} "$@" '
                f'{" ".join(EVAL_WRAPPER)}\n')
    os.chmod(tool, 0o755)
    return dict(os.environ, PATH=os.pathsep.join([str(folder), toydata.VENV_BIN, os.environ["PATH"]]))


def write_study_corpus(folder):
    """A user's parallel text for the Bible recipe's --src/--tgt: {"src": .../c.xx, "tgt": .../c.yy}."""
    pairs = toydata.toy_pairs(600, seed=11, max_len=9)
    paths = {"src": os.path.join(folder, "c.xx"), "tgt": os.path.join(folder, "c.yy")}
    for side, key in ((0, "src"), (1, "tgt")):
        with open(paths[key], "w") as f:
            f.writelines(p[side] + "\n" for p in pairs)
    return paths


def recipe_command(workdir, corpus, *extra):
    return ["bash", RUN, "--preset", "tiny", "--workdir", str(workdir), "--src", corpus["src"], "--tgt", corpus["tgt"],
            "--src-lang", "xx", "--tgt-lang", "yy", *extra]


def write_iwslt_layout(folder, pairs):
    """A stand-in for WIT3's th-en release: train.tags files with metadata, XML dev/test sets."""
    folder.mkdir(parents=True, exist_ok=True)
    train, rest = pairs[:300], pairs[300:]
    for side, lang in ((0, "th"), (1, "en")):
        with open(folder / f"train.tags.th-en.{lang}", "w") as f:
            f.write("<url>http://www.ted.com/talks/x</url>\n<keywords>talks</keywords>\n")
            f.writelines(p[side] + "\n" for p in train)
        for i, name in enumerate(("dev2010", "tst2010", "tst2011", "tst2012", "tst2013")):
            segs = "".join(f'<seg id="{j}"> {p[side]} </seg>\n' for j, p in enumerate(rest[i * 10:(i + 1) * 10]))
            (folder / f"IWSLT15.TED.{name}.th-en.{lang}.xml").write_text(
                f'<mteval>\n<srcset setid="{name}">\n<doc docid="1">\n{segs}</doc>\n</srcset>\n</mteval>\n')


def write_wmt_layout(folder, pairs):
    """A stand-in for the unpacked statmt.org WMT14 archives."""
    (folder / "training").mkdir(parents=True, exist_ok=True)
    (folder / "dev").mkdir()
    (folder / "test-full").mkdir()
    chunks = {"training/europarl-v7": pairs[:120], "commoncrawl": pairs[120:240],
              "training/news-commentary-v9": pairs[240:300]}
    for side, lang in ((0, "en"), (1, "de")):
        for name, chunk in chunks.items():
            with open(folder / f"{name}.de-en.{lang}", "w") as f:
                f.writelines(p[side] + "\n" for p in chunk)
        for i, name in enumerate(("newstest2012", "newstest2013")):
            with open(folder / "dev" / f"{name}.{lang}", "w") as f:
                f.writelines(p[side] + "\n" for p in pairs[300 + 10 * i:310 + 10 * i])
        kind = "src" if lang == "en" else "ref"
        segs = "".join(f'<seg id="{j}">{p[side]}</seg>\n' for j, p in enumerate(pairs[320:340]))
        (folder / "test-full" / f"newstest2014-deen-{kind}.{lang}.sgm").write_text(
            f'<{kind}set setid="newstest2014">\n<doc docid="1">\n{segs}</doc>\n</{kind}set>\n')


PAPER_RECIPES = {"iwslt15_th_en": (write_iwslt_layout, ("th", "en")), "wmt14_en_de": (write_wmt_layout, ("en", "de"))}
PAPER_PAIRS = toydata.toy_pairs(350, seed=5, max_len=8)


def paper_recipe_command(name, workdir):
    """The paper recipe NAME's tiny preset on a stand-in corpus written to WORKDIR/corpus, run in WORKDIR/run."""
    write_layout, _ = PAPER_RECIPES[name]
    write_layout(workdir / "corpus", PAPER_PAIRS)
    return ["bash", os.path.join(toydata.REPO, "examples", name, "run.sh"), "--preset", "tiny", "--corpus-dir",
            str(workdir / "corpus"), "--workdir", str(workdir / "run")]


#: The background runs' niceness: they take the cores the tests leave idle, and leave the tests theirs (at the
#: same priority, an in-process training of the tests with two torch threads ran 20x slower beside them).
NICE = 15


class Background:
    """A command started now (at a lower priority: NICE), its stdout, stderr and then its exit status written to
    ``status``.out, .err and .rc (the .rc last, whole), so that any process of the session can wait for it."""

    def __init__(self, command, env, status, cwd=toydata.REPO):
        self.status = str(status)
        with open(self.status + ".out", "w") as out, open(self.status + ".err", "w") as err:
            self.proc = subprocess.Popen(["nice", "-n", str(NICE), *command], stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, text=True, env=env, cwd=cwd,
                                         start_new_session=True)
        # Its own session is its own scheduling group (Linux's autogroup, where enabled): there `nice` only orders
        # the group's processes among themselves, and the group would get as much CPU as all of pytest. The
        # group's own niceness is what puts the run behind the tests.
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.proc.pid}/autogroup", "w") as f:
                f.write(str(NICE))
        self.watcher = threading.Thread(target=self._write_status, daemon=True)
        self.watcher.start()

    def _write_status(self):
        code = self.proc.wait()
        with open(self.status + ".rc.tmp", "w") as f:
            f.write(str(code))
        os.replace(self.status + ".rc.tmp", self.status + ".rc")

    def wait(self, timeout=None):
        self.proc.wait(timeout)
        self.watcher.join()
        return Elsewhere(self.status, self.proc.args).wait()

    def running(self):
        return self.proc.poll() is None

    def stop(self):
        """SIGTERM to its process group (a recipe's runner forwards it to its steps), SIGKILL 30 s later."""
        if self.running():
            for signum in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signum)
                try:
                    self.proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    pass


class Elsewhere:
    """A Background that another pytest process of the session (a pytest-xdist worker) started: waited for by
    its status files."""

    def __init__(self, status, args=None):
        self.status, self.args = str(status), args

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not os.path.exists(self.status + ".rc"):
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args or self.status, timeout)
            time.sleep(0.5)
        with open(self.status + ".rc") as rc, open(self.status + ".out") as out, open(self.status + ".err") as err:
            return subprocess.CompletedProcess(self.args or self.status, int(rc.read()), out.read(), err.read())

    def running(self):
        return False

    def stop(self):
        pass


#: Other background runs, registered by the test modules that need them (at import, i.e. at collection):
#: {name: starter(folder, status) -> Background}; a test asks for one with the marker ``background(name)``.
STARTERS = {}


class Runs:
    """The session's background runs, each started once per session by whichever pytest process (of
    pytest-xdist's workers, or the only one) asks first, in a folder of ``root`` that all of them share.
    ``mktemp(name)``: a new folder of this process (pytest's tmp_path_factory.mktemp)."""

    NAMES = ("study", "wmt14_en_de")

    def __init__(self, mktemp, root):
        self.mktemp = mktemp
        self.root = pathlib.Path(root) / "background-runs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = real_run_env(str(mktemp("wrappers")))
        self.corpus = write_study_corpus(str(mktemp("corpus")))
        self.started = {}

    def start(self, name):
        if name not in self.started:
            workdir = self.root / re.sub(r"\W", "_", name)
            status = self.root / (workdir.name + ".status")
            try:
                workdir.mkdir()  # the claim: the first process to make it starts the run
            except FileExistsError:
                self.started[name] = (workdir, Elsewhere(status))
                return self.started[name]
            if name == "study":
                run = Background(recipe_command(workdir, self.corpus, "--seeds", "1", "2"), self.env, status)
            elif name in PAPER_RECIPES:
                run = Background(paper_recipe_command(name, workdir), self.env, status)
            else:
                run = STARTERS[name](workdir, status)
            self.started[name] = (workdir, run)
        return self.started[name]

    def wait(self, name, timeout=None):
        """(folder, CompletedProcess) of the run ``name`` (started now if it was not); after ``timeout`` seconds
        of waiting, stopped and an AssertionError."""
        workdir, run = self.start(name)
        try:
            return workdir, run.wait(timeout)
        except subprocess.TimeoutExpired:
            run.stop()
            raise AssertionError(f"{name}: still running after {timeout} s") from None

    def finish(self, others_may_wait, timeout=3600):
        """At the end of this process's tests: the runs it started are stopped, unless other processes of the
        session may still wait for them (pytest-xdist's workers), then they are left ``timeout`` s to end."""
        if others_may_wait:
            for _, run in self.started.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    if run.running():
                        run.proc.wait(timeout)
        self.stop()

    def stop(self):
        for _, run in self.started.values():
            run.stop()

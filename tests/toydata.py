"""Tiny synthetic translation data and in-process drivers for fairseq's CLIs.

The toy language pair maps each source word ``sN`` to a target word ``tN``,
keeping the order, so an attention LSTM of 32 units learns it in seconds.
"""

import atexit
import contextlib
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading

import cli_zygote
import fairseq_seqkd

USER_DIR = fairseq_seqkd.USER_DIR
REPO = os.path.dirname(USER_DIR)
VENV_BIN = os.path.dirname(sys.executable)

#: Options that make a 1x32 Luong LSTM learn the toy mapping in a few seconds.
TINY_TRAIN_ARGS = [
    "--task", "seqkd_translation", "--arch", "luong_lstm_1x32", "--dropout", "0.1",
    "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "400",
    "--no-epoch-checkpoints", "--no-progress-bar", "--log-format", "simple",
    "--log-interval", "1000", "--num-workers", "0", "--seed", "1",
]

#: A tiny fairseq `transformer` instead of the LSTM (add to TINY_TRAIN_ARGS: the last --arch wins).
TINY_TRANSFORMER_ARGS = [
    "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
    "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2", "--lr", "0.005",
]


def toy_pairs(n, seed, vocab=20, min_len=3, max_len=8):
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        ids = [rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(f"s{i}" for i in ids), " ".join(f"t{i}" for i in ids)))
    return pairs


def write_toy_corpus(folder, sizes=(("train", 1500), ("valid", 100), ("test", 100)), seed=0):
    os.makedirs(folder, exist_ok=True)
    for k, (split, n) in enumerate(sizes):
        pairs = toy_pairs(n, seed * 100 + k)
        for side, lang in ((0, "src"), (1, "tgt")):
            with open(os.path.join(folder, f"{split}.{lang}"), "w") as f:
                f.writelines(p[side] + "\n" for p in pairs)
    return folder


def preprocess(text_dir, dest, splits=("train", "valid", "test"), extra=()):
    from fairseq import options
    from fairseq_cli import preprocess as preprocess_cli

    prefs = []
    for split in splits:
        prefs += [f"--{split}pref", os.path.join(text_dir, split)]
    args = options.get_preprocessing_parser().parse_args(
        ["--source-lang", "src", "--target-lang", "tgt", "--destdir", dest, "--workers", "1", *prefs, *extra]
    )
    preprocess_cli.main(args)
    return dest


def over_max_tokens_data(folder, toy_data, split):
    """30 toy pairs binarized as ``split`` with the toy data's dictionaries, against --max-tokens 10: sentence 4
    has 13 source tokens (and 4 target), sentence 17 only a long reference (5 and 12), sentence 9 is exactly at
    the limit (10 and 10, </s> included)."""
    pairs = toy_pairs(30, seed=3)
    pairs[4] = (" ".join(f"s{i}" for i in range(12)), "t0 t1 t2")
    pairs[9] = (" ".join(f"s{i}" for i in range(9)), " ".join(f"t{i}" for i in range(9)))
    pairs[17] = ("s3 s4 s5 s6", " ".join(f"t{i}" for i in range(11)))
    text = os.path.join(folder, "text")
    os.makedirs(text)
    for side, lang in ((0, "src"), (1, "tgt")):
        with open(os.path.join(text, f"{split}.{lang}"), "w") as f:
            f.write("".join(p[side] + "\n" for p in pairs))
    return preprocess(text, os.path.join(folder, "bin"), splits=(split,), extra=[
        "--srcdict", os.path.join(toy_data, "dict.src.txt"), "--tgtdict", os.path.join(toy_data, "dict.tgt.txt")])


def with_mono_split(data, dest, n=120, seed=77):
    """A copy of the binarized toy data ``data`` in ``dest`` with a source-only split ``mono``: the sources of
    ``n`` toy pairs of another seed (fairseq_seqkd.binarize.binarize_source_only); returns ``dest``."""
    import shutil

    from fairseq_seqkd.binarize import binarize_source_only

    shutil.copytree(data, dest)
    text = os.path.join(os.path.dirname(os.path.abspath(dest)), f"mono-{seed}-{n}.txt")
    with open(text, "w") as f:
        f.writelines(src + "\n" for src, _ in toy_pairs(n, seed=seed))
    binarize_source_only(dest, "mono", "src", "tgt", text)
    return dest


def train(data, save_dir, extra=(), max_epoch=12):
    """Run fairseq-train in this process; return the best checkpoint's path."""
    from fairseq import checkpoint_utils, distributed_utils, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq_cli import train as train_cli

    # fairseq keeps the best validation score of the process in a function attribute;
    # a second run in the same process would never write checkpoint_best.pt.
    if hasattr(checkpoint_utils.save_checkpoint, "best"):
        del checkpoint_utils.save_checkpoint.best

    argv = [data, "--user-dir", USER_DIR, "--save-dir", save_dir, *TINY_TRAIN_ARGS,
            "--max-epoch", str(max_epoch), *extra]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    distributed_utils.call_main(convert_namespace_to_omegaconf(args), train_cli.main)
    return os.path.join(save_dir, "checkpoint_best.pt")


def generate(data, path, extra=(), subset="test"):
    """Run fairseq-generate in this process; return its stdout."""
    from fairseq import options
    from fairseq_cli import generate as generate_cli

    argv = [data, "--user-dir", USER_DIR, "--task", "seqkd_translation", "--path", path, "--gen-subset", subset,
            "--batch-size", "32", "--num-workers", "0", *extra]
    args = options.parse_args_and_arch(options.get_generation_parser(), argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        generate_cli.main(args)
    return out.getvalue()


def hypotheses(generate_output):
    """{sentence id: best hypothesis} from fairseq-generate's H- lines."""
    best = {}
    for line in generate_output.splitlines():
        if line.startswith("H-"):
            tag, _score, text = (line.split("\t") + [""])[:3]
            best.setdefault(int(tag[2:]), text)
    return best


def command_env():
    """This process's environment for a command under test, without the variables that would decide torch's
    checkpoint loading for it (what the plugin's fix is tested for)."""
    env = dict(os.environ)
    for var in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_WEIGHTS_ONLY_LOAD"):
        env.pop(var, None)
    return env


def run_cli(args, cwd=None, env=None, check=True, stdin_path=None, input=None):
    """Run a console command of the venv in a process of its own (stdin: the file ``stdin_path``, or the text
    ``input``, else none); return a CompletedProcess. Our ``seqkd-*`` and fairseq's ``fairseq-*`` commands and
    ``python SCRIPT.py`` are forked from a process that has imported fairseq already (tests/cli_zygote.py)
    unless their environment differs from that process's in a variable native libraries read at load;
    anything else is a fresh subprocess."""
    if input is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".stdin", delete=False) as f:
            f.write(input)
        try:
            return run_cli(args, cwd, env, check, f.name)
        finally:
            os.unlink(f.name)
    full_env = command_env()
    full_env["PATH"] = VENV_BIN + os.pathsep + full_env.get("PATH", "")
    full_env.update(env or {})
    zygote = _Zygote.get()
    forkable = zygote is not None and (
        os.path.basename(args[0]) in zygote.commands
        or (args[0] in ("python", sys.executable) and len(args) > 1 and str(args[1]).endswith(".py")))
    if forkable and cli_zygote.same_native_environment(full_env, zygote.env):
        proc = zygote.run([str(a) for a in args], os.path.abspath(cwd or REPO), full_env, stdin_path or os.devnull)
    else:
        with open(stdin_path or os.devnull, "rb") as stdin:
            proc = subprocess.run(args, cwd=cwd or REPO, env=full_env, capture_output=True, text=True, stdin=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class _Zygote:
    """This test process's tests/cli_zygote.py, started at the first command (one per pytest process)."""

    _lock = threading.Lock()
    _instance = None

    _failed = False

    @classmethod
    def get(cls):
        """The running zygote (started now if there is none), or None where one cannot start (then every command
        is a fresh subprocess, as slow as before, and pytest shows a warning once)."""
        with cls._lock:
            if not cls._failed and (cls._instance is None or cls._instance.process.poll() is not None):
                try:
                    cls._instance = cls()
                except (OSError, AssertionError) as e:
                    import warnings

                    warnings.warn(f"tests/cli_zygote.py did not start, commands run as fresh processes: {e}")
                    cls._failed, cls._instance = True, None
            return cls._instance

    def __init__(self):
        from importlib.metadata import entry_points

        self.commands = {e.name for e in entry_points(group="console_scripts")
                         if e.name.startswith(("seqkd-", "fairseq-"))}
        self.folder = tempfile.mkdtemp(prefix="seqkd-cli-zygote-")
        self.socket = os.path.join(self.folder, "socket")
        self.env = command_env()
        with open(os.path.join(self.folder, "zygote.log"), "wb") as log:
            self.process = subprocess.Popen([sys.executable, cli_zygote.__file__, self.socket], env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True)
        ready = self.process.stdout.readline().strip()
        assert ready == "ready", f"tests/cli_zygote.py did not start: {self.folder}/zygote.log"
        atexit.register(self.process.kill)

    def run(self, argv, cwd, env, stdin_path):
        out = tempfile.NamedTemporaryFile(dir=self.folder, suffix=".out", delete=False)
        err = tempfile.NamedTemporaryFile(dir=self.folder, suffix=".err", delete=False)
        out.close(), err.close()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self.socket)
                request = {"argv": argv, "cwd": cwd, "env": env, "stdin": stdin_path, "stdout": out.name,
                           "stderr": err.name}
                conn.sendall((json.dumps(request) + "\n").encode())
                answer = json.loads(conn.makefile("r").readline())
            with open(out.name) as f_out, open(err.name) as f_err:
                return subprocess.CompletedProcess(argv, answer["returncode"], f_out.read(), f_err.read())
        finally:
            os.unlink(out.name), os.unlink(err.name)


def run_clis(calls, workers=2):
    """run_cli for each of ``calls`` (dicts of its keyword arguments, ``args`` among them), ``workers`` at a time
    (each a fresh process that imports torch and fairseq: seconds of one core); their CompletedProcesses, in
    order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda call: run_cli(**call), calls))


def assert_one_line_error(proc, message):
    """Exit status 1 and our message as the last line of stderr, without a traceback.

    (Importing fairseq logs an INFO line about tensorboardX before it: fairseq's own noise.)
    """
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr
    assert "Traceback" not in proc.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: fairseq's DDP on CPU: gloo, ranks started by us, and fairseq's own all-reduce
#: (its pytorch_ddp backend passes GPU device ids, which torch refuses for CPU modules).
def cpu_ddp_args(rank, world_size, port):
    return ["--cpu", "--distributed-world-size", str(world_size), "--distributed-rank", str(rank),
            "--distributed-init-method", f"tcp://127.0.0.1:{port}", "--distributed-no-spawn",
            "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp"]


def run_ranks(argv, world_size=2, timeout=300):
    """Run ``argv`` (a fairseq-train command) as ``world_size`` CPU ranks; return their outputs."""
    port = free_port()
    env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    procs = [subprocess.Popen([*argv, *cpu_ddp_args(rank, world_size, port)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in range(world_size)]
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    for rank, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out[-3000:]}"
    return outputs

"""A process that imports torch and fairseq once, then forks a fresh process for each console command the tests run.

Every command still runs in a process of its own: its own exit status (negative for a signal, as subprocess
gives), stdin, stdout and stderr files, environment, working folder and ``sys.argv``, and it ends through the
interpreter's normal exit (atexit handlers, files flushed). What it saves is the 3-5 s of one core that each
fresh interpreter spends importing torch and fairseq (most of it fairseq importing all of its tasks).

Nothing of the plugin is imported here: a ``fairseq-*`` command without ``--user-dir`` runs without it, as it
would in a fresh process. Environment variables that native libraries read when they are loaded (OpenMP, MKL,
oneDNN, fbgemm, CTranslate2, torch, Python's own) were fixed when this process started: a command whose
environment differs in any of them must run in a fresh process (:func:`same_native_environment`).

    python tests/cli_zygote.py SOCKET     # serve; prints "ready" once imported
Commands: a console script (``seqkd-*``, ``fairseq-*``) or ``python SCRIPT.py ARGS`` (run as ``__main__``, its
folder first on sys.path; not ``python -c``, whose tests may need torch and fairseq not imported). Requests (one JSON line per connection): {"argv", "cwd", "env", "stdin", "stdout", "stderr"} (file paths);
the answer: {"returncode": N}.
"""

import json
import os
import signal
import socket
import sys

#: Prefixes of environment variables read when a native library loads or initialises.
NATIVE_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "ONEDNN_", "DNNL_", "FBGEMM_", "CT2_", "TORCH", "PYTORCH",
                   "PYTHON", "LD_", "CUDA", "OPENBLAS_", "MALLOC_", "GLIBC_")


def native_variables(env):
    return {k: v for k, v in env.items() if k.startswith(NATIVE_PREFIXES)}


def same_native_environment(env, zygote_env):
    return native_variables(env) == native_variables(zygote_env)


def _status_to_returncode(status):
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def serve(path):
    """Accept requests forever; returns only in a forked process that must run one (its request)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the handlers below are reaped by the kernel
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork():
            conn.close()
            continue
        # The handler: runs the command in a process of its own and answers with its exit status.
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request = json.loads(conn.makefile("r").readline())
        pid = os.fork()
        if pid == 0:
            conn.close()
            return request
        _, status = os.waitpid(pid, 0)
        conn.sendall((json.dumps({"returncode": _status_to_returncode(status)}) + "\n").encode())
        conn.close()
        os._exit(0)


def run(request):
    """Become the command: its environment, folder, files and argv; then its console-script entry point."""
    from importlib.metadata import entry_points

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for fd, name, mode in ((0, "stdin", os.O_RDONLY), (1, "stdout", os.O_WRONLY), (2, "stderr", os.O_WRONLY)):
        target = os.open(request[name], mode)
        os.dup2(target, fd)
        os.close(target)
    argv = list(request["argv"])
    if argv[0].endswith(".py") or os.path.basename(argv[0]).startswith("python"):  # python SCRIPT.py ARGS
        import runpy

        sys.argv = argv[1:] if not argv[0].endswith(".py") else argv
        sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
        runpy.run_path(sys.argv[0], run_name="__main__")
        sys.exit(0)
    sys.argv = argv
    (script,) = entry_points(group="console_scripts", name=os.path.basename(sys.argv[0]))
    sys.exit(script.load()())


def main():
    import fairseq  # noqa: F401  (torch and all of fairseq's tasks, models and criterions)
    import fairseq.checkpoint_utils  # noqa: F401
    import fairseq.options  # noqa: F401
    import fairseq.sequence_generator  # noqa: F401

    run(serve(sys.argv[1]))


if __name__ == "__main__":
    main()

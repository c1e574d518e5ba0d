"""tests/cli_zygote.py: a command forked from the zygote behaves as the same command in a fresh process."""

import os
import subprocess
import sys

import pytest
import toydata

SCRIPT = r"""
import os, signal, sys
print("argv", sys.argv[1:])
print("cwd", os.getcwd())
print("var", os.environ.get("SEQKD_ZYGOTE_TEST"))
print("stdin", sys.stdin.read().strip())
print("plugin imported", "fairseq_seqkd" in sys.modules)
print("to stderr", file=sys.stderr)
if sys.argv[1] == "kill":
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "raise":
    raise ValueError("boom")
sys.exit(int(sys.argv[1]))
"""


def fresh(argv, cwd, env, stdin_path):
    with open(stdin_path) as stdin:
        return subprocess.run(argv, cwd=cwd, env=env, stdin=stdin, capture_output=True, text=True)


@pytest.mark.parametrize("how", ["0", "3", "kill", "raise"])
def test_a_forked_command_is_the_same_as_a_fresh_process(how, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    stdin = tmp_path / "stdin.txt"
    stdin.write_text("some input\n")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {"SEQKD_ZYGOTE_TEST": "value"}
    forked = toydata.run_cli([sys.executable, str(script), how], cwd=str(cwd), env=env, check=False,
                             stdin_path=str(stdin))
    assert toydata._Zygote.get() is not None  # it did run in the zygote
    expected = fresh([sys.executable, str(script), how], str(cwd), dict(os.environ, **env), str(stdin))
    assert forked.returncode == expected.returncode == {"0": 0, "3": 3, "kill": -9, "raise": 1}[how]
    assert forked.stdout == expected.stdout
    assert f"cwd {cwd}" in forked.stdout and "var value" in forked.stdout and "stdin some input" in forked.stdout
    assert "plugin imported False" in forked.stdout
    if how == "raise":
        assert forked.stderr.splitlines()[-1] == expected.stderr.splitlines()[-1] == "ValueError: boom"
    else:
        assert forked.stderr == expected.stderr == "to stderr\n"


def test_fairseq_commands_run_without_the_plugin_unless_given_it(toy_data):
    """The zygote imports fairseq, not our plugin: an architecture of ours is unknown without --user-dir."""
    proc = toydata.run_cli(["fairseq-train", toy_data, "--arch", "luong_lstm_1x32", "--max-epoch", "0"],
                           check=False)
    assert proc.returncode != 0 and "invalid choice: 'luong_lstm_1x32'" in proc.stderr


def test_a_changed_native_environment_gets_a_fresh_process(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import os, sys; print(os.getppid())")
    ppid = toydata.run_cli([sys.executable, str(script)], env={"OMP_NUM_THREADS": "7"}).stdout.strip()
    assert int(ppid) == os.getpid()  # started by this process, not forked from the zygote
    forked_ppid = toydata.run_cli([sys.executable, str(script)]).stdout.strip()
    assert int(forked_ppid) != os.getpid()

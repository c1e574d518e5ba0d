"""Atomic writing (fairseq_seqkd.textio): all or nothing, with the usual file mode; strict UTF-8 reading."""

import os

import pytest

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open, atomic_write_lines, read_lines


def test_atomic_write_gets_the_usual_mode_and_leaves_nothing_on_error(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_lines(str(tmp_path / "out.txt"), ["a", "b"])
        assert (tmp_path / "out.txt").read_text() == "a\nb\n"
        assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        with pytest.raises(RuntimeError):
            with atomic_open(str(tmp_path / "half.txt")) as f:
                f.write("half")
                raise RuntimeError("stop")
        assert sorted(os.listdir(tmp_path)) == ["out.txt"]
    finally:
        os.umask(mask)


def test_read_lines_names_the_file_and_line(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"ok\r\nfine\n" + "caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SeqKDError, match=r"x.txt:3: not UTF-8 text"):
        read_lines(str(path))
    path.write_bytes(b"ok\r\nfine\n")
    assert read_lines(str(path)) == ["ok", "fine"]
    with pytest.raises(SeqKDError, match="missing.txt: No such file"):
        read_lines(str(tmp_path / "missing.txt"))


def test_atomic_dir_publishes_whole_folders_and_leaves_nothing_on_failure(tmp_path):
    from fairseq_seqkd.textio import atomic_dir

    dest = tmp_path / "out"
    with atomic_dir(str(dest)) as tmp:
        (open(os.path.join(tmp, "a"), "w")).write("first")
        assert not dest.exists()  # nothing is visible before the block ends
    assert sorted(os.listdir(tmp_path)) == ["out"] and (dest / "a").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_dir(str(dest)) as tmp:
            open(os.path.join(tmp, "b"), "w").write("half")
            raise RuntimeError("killed")
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(dest) == ["a"]  # the old folder stays
    with atomic_dir(str(dest)) as one, atomic_dir(str(dest)) as two:  # two writers never share a folder
        assert one != two
        open(os.path.join(one, "x"), "w").write("1")
        open(os.path.join(two, "y"), "w").write("2")
    assert os.listdir(dest) == ["x"] and sorted(os.listdir(tmp_path)) == ["out"]  # the last to finish wins


def test_a_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path):
    """SIGKILL leaves no time to clean up: the next writer of the same path removes what a dead process left
    (its pid is in the name), and leaves a live writer's alone."""
    import subprocess
    import sys

    from fairseq_seqkd.textio import atomic_dir, temporary_prefix

    dest = str(tmp_path / "out")
    code = ("import os, sys\nfrom fairseq_seqkd.textio import atomic_dir, atomic_open\n"
            "with atomic_open(sys.argv[1] + '.txt') as f, atomic_dir(sys.argv[1]) as d:\n"
            "    f.write('half'); open(os.path.join(d, 'x'), 'w').write('half'); os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, dest])
    assert proc.returncode == -9
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and all(name.endswith(".tmp") for name in left)  # what the kill left
    live = tmp_path / (temporary_prefix(dest) + "busy.tmp")  # this (live) process's: not touched
    live.mkdir()
    with atomic_dir(dest) as tmp:
        open(os.path.join(tmp, "y"), "w").write("whole")
    with atomic_open(dest + ".txt") as f:
        f.write("whole")
    assert sorted(os.listdir(tmp_path)) == sorted(["out", "out.txt", live.name])

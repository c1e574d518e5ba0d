"""Line-oriented text files: strict reading and atomic writing.

Every output of this package is written to a temporary file in the same
folder and renamed into place, so a crash or a bad input never leaves a
half-written file that looks complete.
"""

import contextlib
import os
import tempfile


def read_lines(path):
    """Return the lines of a UTF-8 file without their newlines; SystemExit names the bad line."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SystemExit(f"error: {path}: {e.strerror}")
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise SystemExit(f"error: {path}:{number}: not UTF-8 text ({e.reason} at byte {e.start})")
    return out


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to ``path``; rename it to ``path`` only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_lines(path, lines):
    """Write ``lines`` (without newlines) to ``path`` atomically."""
    with atomic_open(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")

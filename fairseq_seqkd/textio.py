"""Line-oriented text files: strict reading and atomic writing.

Every output of this package is written to a temporary file in the same
folder and renamed into place, so a crash or a bad input never leaves a
half-written file that looks complete.
"""

import contextlib
import hashlib
import os
import shutil
import tempfile

from fairseq_seqkd.errors import SeqKDError


def fail(message):
    """Stop a console script with a one-line error (exit status 1).

    For scripts only (seqkd-report still uses it): library code raises :class:`SeqKDError` instead.
    """
    raise SystemExit(f"error: {message}")


class NotUTF8(ValueError):
    """A line of a file is not UTF-8; ``line`` is its 1-based number."""

    def __init__(self, line, reason):
        super().__init__(f"not UTF-8 text ({reason})")
        self.line = line


def utf8_lines(raw):
    """UTF-8 bytes to lines without their newlines (and without a trailing CR); NotUTF8 on a bad line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = raw.rfind(b"\n", 0, e.start) + 1
        raise NotUTF8(raw.count(b"\n", 0, e.start) + 1, f"{e.reason} at byte {e.start - line_start}")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def read_lines(path):
    """Return the lines of a UTF-8 file without their newlines; SeqKDError names the file (and bad line)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror}") from None
    try:
        return utf8_lines(raw)
    except NotUTF8 as e:
        raise SeqKDError(f"{path}:{e.line}: {e}") from None


def stream_lines(path):
    """(line number, line without its newline) of a UTF-8 file, one line at a time (:func:`read_lines` for files
    of any size); SeqKDError names the file and the line, as read_lines does."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SeqKDError(f"{path}: {e.strerror}") from None
    with f:
        for number, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SeqKDError(f"{path}:{number}: {NotUTF8(number, f'{e.reason} at byte {e.start}')}") from None
            yield number, text.rstrip("\n").rstrip("\r")


def refuse_broken_link(path, name):
    """SeqKDError (``name: ... is a broken link to TARGET``) if ``path`` or a folder above it is a symbolic link
    to nothing: ``os.path.exists`` is False there, yet nothing can be created."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        prefix = os.sep.join(parts[:i])
        if not os.path.lexists(prefix):
            return
        if os.path.islink(prefix) and not os.path.exists(prefix):
            where = "" if i == len(parts) else f"{prefix} "
            raise SeqKDError(f"{name}: {where}is a broken link to {os.readlink(prefix)}")


def make_folder(path):
    """``os.makedirs(path, exist_ok=True)``, with a one-line SeqKDError for a broken link or a file in the way."""
    refuse_broken_link(path, path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise SeqKDError(f"{path}: cannot create this folder ({e.strerror})") from None


def file_sha256(path, chunk=1 << 20):
    """The sha256 of a file's bytes, read in chunks (how a teacher checkpoint is named by its content)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def pid_running(pid):
    """Whether process ``pid`` exists and is not a zombie (a process that has ended but is not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc: exists


def temporary_prefix(path):
    """The prefix of ``path``'s temporaries: NAME.PID. (the pid tells a killed writer's leftovers apart)."""
    return f"{os.path.basename(path)}.{os.getpid()}."


def remove_stale_temporaries(path):
    """Remove what writers of ``path`` killed before they could clean up left beside it (``NAME.PID.*.tmp``,
    ``NAME.PID.*.old``, whose PID is no longer running); a live writer's are left alone."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(name + ".") and entry.endswith((".tmp", ".old"))):
            continue
        pid = entry[len(name) + 1:].split(".", 1)[0]
        if pid.isdigit() and not pid_running(int(pid)):
            full = os.path.join(folder, entry)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(full)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, mode="w", encoding="utf-8"):
    """Open a temporary file next to ``path``; rename it to ``path`` only if the block succeeds."""
    folder = os.path.dirname(os.path.abspath(path))
    make_folder(folder)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=folder)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private (0600); the output gets the usual mode
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a new temporary folder next to ``path``; if the block succeeds it becomes ``path`` (replacing an
    earlier one), else it is removed. The one way this package publishes a folder: the temporary name is
    unique, so two runs never write into the same one, and ``path`` is either the old folder, the new one,
    or (after a kill in the instant between two renames) absent, never half-written. Temporaries of writers
    that were killed (SIGKILL leaves no time to clean up) are removed by the next writer of ``path``."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    refuse_broken_link(path, path)
    make_folder(parent)
    remove_stale_temporaries(path)
    tmp = tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".tmp", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if os.path.lexists(path):
            old = tempfile.mkdtemp(prefix=temporary_prefix(path), suffix=".old", dir=parent)
            os.replace(path, os.path.join(old, "previous"))
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_lines(path, lines):
    """Write ``lines`` (without newlines) to ``path`` atomically."""
    with atomic_open(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")

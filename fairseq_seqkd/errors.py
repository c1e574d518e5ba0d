"""The one family of errors the library raises, and the one place they become a one-line exit.

Library modules raise :class:`SeqKDError` (or a subclass) with a message that names the file, line or value
at fault. Only console scripts (:func:`fairseq_seqkd.cli.run_script`) and the entry points fairseq calls
(the ``word_kd`` criterion and the ``seqkd_translation`` task) turn it into ``error: ...`` on stderr and
exit status 1, through :func:`exit_on_error`; fairseq's own CLIs would print a traceback otherwise.
"""

import contextlib
import sys


class SeqKDError(Exception):
    """A fault in the user's input or options, with a message fit for one line."""


class KBestError(SeqKDError):
    """A malformed K-best input; ``str()`` is ``FILE:LINE: what is wrong``. Picklable (worker processes)."""

    def __init__(self, path, line, message):
        super().__init__(path, line, message)
        self.path, self.line, self.message = path, line, message

    def __str__(self):
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


#: Exit status of a script that stopped early on purpose (e.g. ``seqkd-distill --stop-after-batches``):
#: not a failure, but its output is not complete, so a recipe must not mark the step done.
EXIT_STOPPED = 3


class StoppedEarly(SeqKDError):
    """A run stopped before its output was complete because it was asked to; rerun it to continue."""


@contextlib.contextmanager
def exit_on_error():
    """Turn a :class:`SeqKDError` raised in the block into ``error: ...`` on stderr and exit status 1
    (:class:`StoppedEarly`: ``stopped: ...`` and :data:`EXIT_STOPPED`)."""
    try:
        yield
    except StoppedEarly as e:
        sys.stderr.write(f"stopped: {e}\n")
        raise SystemExit(EXIT_STOPPED) from None
    except SeqKDError as e:
        raise SystemExit(f"error: {e}") from None

"""The one family of errors the library raises.

Library modules raise :class:`SeqKDError` (or a subclass) with a message that names the file, line or value
at fault; only console scripts and fairseq entry points turn it into a one-line ``error: ...`` and a non-zero
exit status.
"""


class SeqKDError(Exception):
    """A fault in the user's input or options, with a message fit for one line."""

"""Tasks (fairseq also imports every module here for --user-dir)."""

from . import seqkd_translation  # noqa: F401

"""Models and architectures (fairseq also imports every module here for --user-dir)."""

from . import luong_lstm, transformer_students  # noqa: F401

"""Criterions (fairseq does not import this folder by itself: the package does)."""

from . import word_kd  # noqa: F401

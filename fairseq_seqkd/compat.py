"""Safe loading of fairseq checkpoints under torch >= 2.6.

torch 2.6 made ``torch.load`` default to ``weights_only=True``, which only
unpickles tensors, containers and an allowlist of globals. fairseq 0.12 calls
``torch.load`` without the argument, and its checkpoints hold a few objects
outside that list (the legacy ``args`` namespace, numpy scalars in saved
meters), so ``fairseq-generate`` stops with "Unsupported global". We add
exactly those globals to torch's allowlist; safe loading stays on for
everything else.

numpy is imported only to list its globals: without numpy (seqkd-translate's torch-only install)
no checkpoint can hold numpy scalars, and there is nothing to allow.
"""

import argparse

import torch


def _numpy_scalar_globals():
    """The numpy objects a pickled numpy scalar refers to (module paths differ across numpy 1/2); none
    without numpy."""
    try:
        import numpy as np
    except ModuleNotFoundError as e:
        if e.name != "numpy":  # numpy is there but broken: say so
            raise
        return []
    found = [np.dtype]
    try:  # numpy >= 2
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    found.append(scalar)
    found.extend(type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "bool"))
    return found


def fairseq_checkpoint_globals():
    """The non-tensor globals found in fairseq 0.12 checkpoints."""
    return [argparse.Namespace, *_numpy_scalar_globals()]


def allow_fairseq_checkpoints():
    """Add the globals fairseq checkpoints need to torch's safe-loading allowlist (idempotent)."""
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is not None:  # torch < 2.4 has no allowlist and loads them anyway
        add_safe_globals(fairseq_checkpoint_globals())

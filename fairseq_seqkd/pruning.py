"""Magnitude pruning (Kim & Rush 2016, §6; See et al. 2016; seq2seq-attn's prune.lua).

A mask keeps the weights with the largest magnitudes: ``True`` = kept.

* class-blind (default): one ranking over every prunable tensor; exactly
  ``round(ratio * N)`` weights of the N prunable ones are pruned;
* class-uniform: ``round(ratio * n)`` of each tensor's n weights.

Prunable tensors are those with two or more dimensions (weight matrices and
embeddings); biases are never pruned. ``scope="no-embeddings"`` also leaves
the embedding tables alone. Ties in magnitude are broken by position: among
equal magnitudes the weight that comes first (tensors in ``state_dict``
order, elements in row-major order) is pruned first, so masks are
deterministic.

A tied (shared) parameter is one parameter: a checkpoint's state dict lists it
under each of its names (``--share-all-embeddings``: ``encoder.embed_tokens``,
``decoder.embed_tokens``, ``decoder.output_projection``), the model's
``named_parameters()`` once. :func:`parameter_names` learns which names are
one parameter from the model built from the checkpoint; pruning ranks, counts
and masks such a parameter once, under its ``named_parameters()`` name (at the
place of its first name in ``state_dict`` order), and every name of it in the
pruned checkpoint holds the same pruned tensor.

The mask's checkpoint contract lives here too: a pruned checkpoint (``seqkd-prune``'s output, and every
checkpoint of a ``--task seqkd_translation`` run that holds a mask) keeps its masks, packed as bits, in
``extra_state[TASK_STATE_KEY]["prune_masks"]``, which is where fairseq keeps the task's checkpoint dict
(``get_checkpoint_dict``/``set_checkpoint_dict``, keyed by the task's class name). The task holds exactly
the mask it finds there; a model that merely has exact zeros is never frozen.
"""

import copy
import logging
import os
import re
from typing import Dict, Iterable, Optional, Tuple

import torch

from fairseq_seqkd.errors import SeqKDError

logger = logging.getLogger(__name__)

SCHEMES = ("class-blind", "class-uniform")
SCOPES = ("all", "no-embeddings")

#: tensor groups of the report, by the first matching pattern (regular expressions, searched in the name):
#: fairseq's LSTMs (``encoder.lstm.*``, the decoder's cells ``decoder.layers.N.{weight,bias}_{ih,hh}``) and
#: Transformers (``{encoder,decoder}.layers.N.*`` and the final ``layer_norm``)
GROUPS = (("embeddings", (r"embed_tokens", r"embed_positions", r"layernorm_embedding")),
          ("attention", (r"attention",)),
          ("output projection", (r"fc_out", r"additional_fc", r"output_projection")),
          ("LSTM", (r"lstm", r"(^|\.)layers\.\d+\.(weight|bias)_(ih|hh)")),
          ("encoder layers", (r"(^|\.)encoder\.(layers\.|layer_norm\.)",)),
          ("decoder layers", (r"(^|\.)decoder\.(layers\.|layer_norm\.)",)))


def group_of(name: str) -> str:
    for group, patterns in GROUPS:
        if any(re.search(p, name) for p in patterns):
            return group
    return "other"


def prunable(state: Dict[str, torch.Tensor], scope: str = "all") -> Dict[str, torch.Tensor]:
    """The tensors pruning applies to, in ``state`` order."""
    if scope not in SCOPES:
        raise SeqKDError(f"scope must be one of {SCOPES}, not {scope!r}")
    return {name: t for name, t in state.items()
            if torch.is_floating_point(t) and t.dim() >= 2
            and not (scope == "no-embeddings" and "embed_tokens" in name)}


def _prune_smallest(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask over a 1-D tensor: False for the k smallest values (earliest first among ties)."""
    keep = torch.ones_like(magnitudes, dtype=torch.bool)
    if k <= 0:
        return keep
    if k >= magnitudes.numel():
        return torch.zeros_like(keep)
    threshold = torch.kthvalue(magnitudes, k).values
    below = magnitudes < threshold
    keep &= ~below
    ties = (magnitudes == threshold).nonzero().flatten()
    keep[ties[: k - int(below.sum())]] = False
    return keep


def magnitude_masks(state: Dict[str, torch.Tensor], ratio: float, scheme: str = "class-blind",
                    scope: str = "all") -> Dict[str, torch.Tensor]:
    """{tensor name: bool mask (True = kept)} pruning ``ratio`` of the prunable weights."""
    if not 0 <= ratio < 1:
        raise SeqKDError(f"prune ratio {ratio}: must be in [0, 1)")
    if scheme not in SCHEMES:
        raise SeqKDError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    tensors = prunable(state, scope)
    if scheme == "class-uniform":
        return {name: _prune_smallest(t.detach().abs().flatten().float(), round(ratio * t.numel())).view_as(t)
                for name, t in tensors.items()}
    flat = torch.cat([t.detach().abs().flatten().float() for t in tensors.values()])
    keep = _prune_smallest(flat, round(ratio * flat.numel()))
    masks, start = {}, 0
    for name, t in tensors.items():
        masks[name] = keep[start:start + t.numel()].view_as(t)
        start += t.numel()
    return masks


def apply_masks(state_or_params: Iterable[Tuple[str, torch.Tensor]], masks: Dict[str, torch.Tensor]):
    """Zero the pruned weights in place."""
    with torch.no_grad():
        for name, t in state_or_params:
            if name in masks:
                t.masked_fill_(~masks[name].to(t.device), 0)


def pack(mask: torch.Tensor) -> Dict[str, object]:
    """A bool mask as bits in a uint8 tensor (8x smaller), with its shape."""
    flat = mask.flatten().cpu()
    pad = (-flat.numel()) % 8
    bits = torch.cat([flat, flat.new_zeros(pad)]).view(-1, 8).to(torch.uint8)
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)
    return {"shape": list(mask.shape), "bits": (bits * weights).sum(dim=1, dtype=torch.uint8)}


def unpack(packed: Dict[str, object]) -> torch.Tensor:
    """Inverse of :func:`pack`."""
    bits = packed["bits"].unsqueeze(1).bitwise_and(torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8))
    shape = packed["shape"]
    n = 1
    for d in shape:
        n *= d
    return bits.ne(0).flatten()[:n].view(shape)


def stats(state: Dict[str, torch.Tensor], names: Optional[Dict[str, str]] = None) -> Dict[str, Tuple[int, int]]:
    """{group: (parameters, non-zero parameters)} plus a 'total' row; a tied parameter counted once (``names``:
    :func:`parameter_names`)."""
    rows: Dict[str, Tuple[int, int]] = {}
    for name, t in unique_tensors(state, names).items():
        if not torch.is_floating_point(t):
            continue
        group = group_of(name)
        total, nonzero = rows.get(group, (0, 0))
        rows[group] = (total + t.numel(), nonzero + int(t.count_nonzero()))
    rows["total"] = (sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values()))
    return rows


def to_sparse(state: Dict[str, torch.Tensor], masks: Dict[str, torch.Tensor],
              names: Optional[Dict[str, str]] = None) -> Dict[str, object]:
    """Masked tensors as (flat indices of kept weights, their values); other tensors as they are. A tied
    parameter (``names``: :func:`parameter_names`; its mask under its parameter name) is stored once, at its
    first name, and its other names as ``{"same_as": first name}``."""
    out, first = {}, {}
    for name, t in state.items():
        param = (names or {}).get(name, name)
        if param in first:
            out[name] = {"same_as": first[param]}
            continue
        first[param] = name
        if param in masks and param != name:
            masks = {**masks, name: masks[param]}
        if name in masks:
            index = masks[name].flatten().nonzero().flatten()
            dtype = torch.int32 if t.numel() < 2**31 else torch.int64
            out[name] = {"shape": list(t.shape), "index": index.to(dtype), "values": t.flatten()[index].clone()}
        else:
            out[name] = t
    return out


def from_sparse(sparse: Dict[str, object]) -> Dict[str, torch.Tensor]:
    """Inverse of :func:`to_sparse`: the same dense tensors, bit for bit."""
    out = {}
    for name, t in sparse.items():
        if isinstance(t, dict) and "same_as" in t:
            out[name] = out[t["same_as"]]  # one tensor under each name of a tied parameter
        elif isinstance(t, dict):
            dense = torch.zeros(t["shape"], dtype=t["values"].dtype)
            dense.view(-1)[t["index"].long()] = t["values"]
            out[name] = dense
        else:
            out[name] = t
    return out


# -- the mask's checkpoint contract ------------------------------------------------------------------------

#: where a checkpoint keeps its masks: ``extra_state[TASK_STATE_KEY]``. fairseq saves and restores a task's
#: checkpoint dict under the task's class name, so this must stay the name of SeqKDTranslationTask.
TASK_STATE_KEY = "SeqKDTranslationTask"


def task_state(masks: Dict[str, torch.Tensor], how: Optional[Dict[str, object]] = None) -> Dict[str, object]:
    """The task's checkpoint dict that carries ``masks`` (and, optionally, how they were made)."""
    entry = {"prune_masks": {name: pack(mask) for name, mask in masks.items()}}
    if how:
        entry["prune"] = how
    return entry


def masks_of_task_state(entry) -> Optional[Dict[str, torch.Tensor]]:
    """The masks of a task's checkpoint dict (None when it holds none)."""
    packed = (entry or {}).get("prune_masks")
    return {name: unpack(p) for name, p in packed.items()} if packed else None


def masks_of_checkpoint(state) -> Optional[Dict[str, torch.Tensor]]:
    """The masks a checkpoint's state carries (None when it is not pruned)."""
    return masks_of_task_state((state.get("extra_state") or {}).get(TASK_STATE_KEY))


def read_masks(path) -> Optional[Dict[str, torch.Tensor]]:
    """The masks of the checkpoint file ``path`` (None when it is not pruned), without reading its weights
    when torch can map the file."""
    try:
        state = torch.load(path, map_location="cpu", mmap=True)
    except RuntimeError:  # a checkpoint in torch's legacy format cannot be mapped
        state = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise SeqKDError(f"{path}: no such file") from None
    return masks_of_checkpoint(state)


def check_masks(masks: Dict[str, torch.Tensor], params: Dict[str, torch.Tensor], where):
    """SeqKDError unless every mask has a weight of its name and shape in ``params``."""
    for name, mask in masks.items():
        if name not in params:
            raise SeqKDError(f"{where}: a pruning mask for {name}, which the model does not have")
        if tuple(mask.shape) != tuple(params[name].shape):
            raise SeqKDError(f"{where}: the pruning mask of {name} has shape {tuple(mask.shape)}, the weight "
                             f"{tuple(params[name].shape)}")


# -- tied parameters: one parameter under several state-dict names ------------------------------------------

class _Dictionaries:
    """What a fairseq model's ``build_model`` needs of a task: dictionaries (stand-ins of the right size)."""

    def __init__(self, sizes):
        from fairseq.data import Dictionary

        def stand_in(n):
            d = Dictionary()
            for i in range(n - len(d)):
                d.add_symbol(f"<{i}>")
            return d

        self.source_dictionary, self.target_dictionary = (stand_in(n) for n in sizes)


def _names_from_model(state) -> Optional[Dict[str, str]]:
    """{state-dict name: the name ``named_parameters()`` gives its parameter} from the model the checkpoint's
    configuration builds (on the meta device: no memory, no weights), or None if it cannot be built."""
    from fairseq import models

    model_state, cfg = state["model"], state.get("cfg")
    sizes = [model_state.get(f"{side}.embed_tokens.weight") for side in ("encoder", "decoder")]
    if cfg is None or getattr(cfg, "model", None) is None or any(t is None or t.dim() != 2 for t in sizes):
        return None
    with torch.device("meta"):  # build_model fills in defaults: it gets a copy of the configuration
        model = models.build_model(copy.deepcopy(cfg.model), _Dictionaries([t.size(0) for t in sizes]),
                                   from_checkpoint=True)
    param_name = {id(p): n for n, p in model.named_parameters()}
    names = {}
    for name, t in model.state_dict(keep_vars=True).items():
        if name in model_state and id(t) in param_name and tuple(t.shape) != tuple(model_state[name].shape):
            return None  # not the model of these weights
        names[name] = param_name.get(id(t), name)
    return {name: names.get(name, name) for name in model_state}


def _names_from_storage(model_state) -> Dict[str, str]:
    """{state-dict name: its first name} from the tensors that share storage in the loaded checkpoint (a
    checkpoint saved from the CPU; one saved from a GPU holds each name's copy)."""
    first, names = {}, {}
    for name, t in model_state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        names[name] = first.setdefault(key, name) if t.numel() else name
    return names


def parameter_names(state, where="checkpoint") -> Dict[str, str]:
    """{name in ``state["model"]``: the name ``named_parameters()`` gives its parameter}: a tied parameter's
    names all map to one name, every other name to itself. Learnt from the model built from the checkpoint's
    configuration; where it cannot be built, from the tensors that share storage in ``state``. SeqKDError when
    the names of one parameter hold different values."""
    try:
        names = _names_from_model(state)
    except Exception as e:  # an architecture this process does not know, a missing pretrained embedding file...
        logger.warning("%s: cannot build its model (%s: %s); tied parameters found by shared storage only",
                       where, type(e).__name__, " ".join(str(e).split())[:200])
        names = None
    if names is None:
        names = _names_from_storage(state["model"])
    model_state, first = state["model"], {}
    own = {name: name for name in model_state}  # the checkpoint's own name strings: the same bytes when saved
    names = {name: own.get(param, param) for name, param in names.items()}
    for name, param in names.items():
        other = first.setdefault(param, name)
        if other != name and not torch.equal(model_state[other], model_state[name]):
            raise SeqKDError(f"{where}: {other} and {name} are one parameter of the model ({param}) but hold "
                             f"different values")
    return names


def unique_tensors(model_state: Dict[str, torch.Tensor], names: Optional[Dict[str, str]] = None
                   ) -> Dict[str, torch.Tensor]:
    """``model_state`` with each parameter once, under its ``named_parameters()`` name (``names``:
    :func:`parameter_names`), at the place of its first name; the same tensors, not copies."""
    if not names:
        return dict(model_state)
    out = {}
    for name, t in model_state.items():
        out.setdefault(names.get(name, name), t)
    return out


def tie(model_state: Dict[str, torch.Tensor], names: Dict[str, str], params: Dict[str, torch.Tensor]):
    """Every name of a tied parameter in ``model_state`` set to its one tensor in ``params``."""
    for name, t in model_state.items():
        one = params.get(names.get(name, name))
        if one is not None and t is not one:
            model_state[name] = one


# -- seqkd-prune ---------------------------------------------------------------------------------------------

SPARSE_FORMAT = "seqkd-sparse-v1"


def report_lines(state, names: Optional[Dict[str, str]] = None):
    """Parameters and non-zero parameters per tensor group, as a small table (a tied parameter counted once,
    ``names``: :func:`parameter_names`)."""
    rows = stats(state, names)
    lines = [f"{'group':18s} {'parameters':>12s} {'non-zero':>12s} {'pruned':>7s}"]
    for group, (total, nonzero) in rows.items():
        pruned = 100 * (1 - nonzero / total) if total else 0.0
        lines.append(f"{group:18s} {total:12,d} {nonzero:12,d} {pruned:6.1f}%")
    return lines


def _check_output(inp, out):
    if os.path.exists(out) and os.path.samefile(inp, out) or os.path.abspath(inp) == os.path.abspath(out):
        raise SeqKDError(f"{out}: the output must not be the input")


def prune_checkpoint(inp, out, ratio, scheme="class-blind", scope="all", export_sparse=None):
    """Prune the checkpoint ``inp`` into ``out``, which carries its masks (see above); optionally also write
    the kept weights as (indices, values) to ``export_sparse``. Returns the pruned state."""
    from fairseq_seqkd.checkpoints import load_checkpoint_state, save_checkpoint

    if not 0 <= ratio < 1:
        raise SeqKDError(f"--ratio {ratio}: must be in [0, 1)")
    state = load_checkpoint_state(inp)
    _check_output(inp, out)
    names = parameter_names(state, inp)
    params = unique_tensors(state["model"], names)
    masks = magnitude_masks(params, ratio, scheme, scope)
    apply_masks(params.items(), masks)
    tie(state["model"], names, params)
    state["extra_state"] = state.get("extra_state") or {}
    state["extra_state"][TASK_STATE_KEY] = task_state(masks, {"ratio": ratio, "scheme": scheme, "scope": scope})
    save_checkpoint(state, out)
    logger.info("pruned %s -> %s: ratio %s, %s, scope %s", inp, out, ratio, scheme, scope)
    for line in report_lines(state["model"], names):
        logger.info("%s", line)
    if export_sparse:
        sparse = {"format": SPARSE_FORMAT, "model": to_sparse(state["model"], masks, names),
                  "checkpoint": {k: v for k, v in state.items() if k not in ("model", "last_optimizer_state")}}
        save_checkpoint(sparse, export_sparse)
        logger.info("sparse export %s: %.1f MB (dense checkpoint without optimizer state: %.1f MB)",
                    export_sparse, os.path.getsize(export_sparse) / 2**20,
                    sum(t.numel() * t.element_size() for t in params.values()) / 2**20)
    return state


def densify(sparse_path, out):
    """A sparse export (``--export-sparse``) back to an ordinary checkpoint, bit for bit."""
    from fairseq_seqkd.checkpoints import save_checkpoint

    _check_output(sparse_path, out)
    try:
        sparse = torch.load(sparse_path, map_location="cpu")
    except FileNotFoundError:
        raise SeqKDError(f"{sparse_path}: no such file") from None
    except Exception as e:
        raise SeqKDError(f"{sparse_path}: not a sparse export ({type(e).__name__})") from None
    if not isinstance(sparse, dict) or sparse.get("format") != SPARSE_FORMAT:
        raise SeqKDError(f"{sparse_path}: not a sparse export written by seqkd-prune --export-sparse")
    state = sparse["checkpoint"]
    state["model"] = from_sparse(sparse["model"])
    save_checkpoint(state, out)
    logger.info("wrote %s (dense) from %s", out, sparse_path)
    return state

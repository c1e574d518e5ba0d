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
"""

from typing import Dict, Iterable, Tuple

import torch

SCHEMES = ("class-blind", "class-uniform")
SCOPES = ("all", "no-embeddings")

#: tensor groups of the report, by the first matching name fragment
GROUPS = (("embeddings", ("embed_tokens",)), ("attention", ("attention",)),
          ("output projection", ("fc_out", "additional_fc", "output_projection")),
          ("LSTM", ("lstm", "layers.")))


def group_of(name: str) -> str:
    for group, fragments in GROUPS:
        if any(f in name for f in fragments):
            return group
    return "other"


def prunable(state: Dict[str, torch.Tensor], scope: str = "all") -> Dict[str, torch.Tensor]:
    """The tensors pruning applies to, in ``state`` order."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, not {scope!r}")
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
        raise ValueError(f"ratio must be in [0, 1), not {ratio}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
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
    bits = packed["bits"].unsqueeze(1).bitwise_and(torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8))
    shape = packed["shape"]
    n = 1
    for d in shape:
        n *= d
    return bits.ne(0).flatten()[:n].view(shape)


def stats(state: Dict[str, torch.Tensor]) -> Dict[str, Tuple[int, int]]:
    """{group: (parameters, non-zero parameters)} plus a 'total' row."""
    rows: Dict[str, Tuple[int, int]] = {}
    for name, t in state.items():
        if not torch.is_floating_point(t):
            continue
        group = group_of(name)
        total, nonzero = rows.get(group, (0, 0))
        rows[group] = (total + t.numel(), nonzero + int(t.count_nonzero()))
    rows["total"] = (sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values()))
    return rows


def to_sparse(state: Dict[str, torch.Tensor], masks: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """Masked tensors as (flat indices of kept weights, their values); other tensors as they are."""
    out = {}
    for name, t in state.items():
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
        if isinstance(t, dict):
            dense = torch.zeros(t["shape"], dtype=t["values"].dtype)
            dense.view(-1)[t["index"].long()] = t["values"]
            out[name] = dense
        else:
            out[name] = t
    return out

"""fairseq checkpoints: load one (students, teachers, pruning), check its dictionaries, save one back.

The loading is fairseq's own (``checkpoint_utils.load_checkpoint_to_cpu``, ``task.build_model``); what is
added are one-line errors (:class:`~fairseq_seqkd.errors.SeqKDError`) for a missing or foreign file and for
dictionaries that differ from the data's.
"""

import logging
import os
import re

import torch

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_open

logger = logging.getLogger(__name__)


def load_checkpoint_state(path, what="checkpoint"):
    """fairseq's ``load_checkpoint_to_cpu``, with one-line errors for a missing or foreign file."""
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        raise SeqKDError(f"{what} {path}: no such file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as e:  # torch.load / unpickling / fairseq upgrade errors
        detail = re.search(r"Unsupported global: [^ ]+ [^ ]+", str(e))
        raise SeqKDError(f"{what} {path}: not a fairseq checkpoint "
                         f"({detail.group(0) if detail else type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or state.get("cfg") is None:
        raise SeqKDError(f"{what} {path}: not a fairseq checkpoint (no 'model' and 'cfg' entries)")
    return state


def _dictionary_file(task_cfg, lang):
    data = getattr(task_cfg, "data", None)
    if not data or lang is None:
        return None
    return os.path.join(data.split(os.pathsep)[0], f"dict.{lang}.txt")


def _first_difference(a, b):
    for i, (x, y) in enumerate(zip(a.symbols, b.symbols)):
        if x != y:
            return f"first difference at index {i}: {x!r} vs {y!r}"
    return "one is a prefix of the other"


def check_dictionaries(path, state, task, what="teacher"):
    """Stop unless the checkpoint's source and target dictionaries equal ``task``'s.

    The checkpoint does not hold its dictionaries, only the data folder it was
    trained on: we compare symbol by symbol when that folder is still there,
    and at least the sizes (from the embedding shapes) otherwise.
    """
    from fairseq.data import Dictionary

    cfg = state["cfg"]
    student_cfg = task.cfg
    whose = "the student's" if what == "teacher" else "the data's"
    for side, ours, lang, key in (
        ("source", task.source_dictionary, getattr(student_cfg, "source_lang", None), "encoder.embed_tokens.weight"),
        ("target", task.target_dictionary, getattr(student_cfg, "target_lang", None), "decoder.embed_tokens.weight"),
    ):
        our_file = _dictionary_file(student_cfg, lang) or "dictionary"
        their_lang = getattr(cfg.task, f"{side}_lang", None) or lang
        their_file = _dictionary_file(cfg.task, their_lang)
        if their_file and os.path.isfile(their_file):
            theirs = Dictionary.load(their_file)
            if theirs.symbols != ours.symbols:
                raise SeqKDError(
                    f"{what} {path}: its {side} dictionary {their_file} ({len(theirs)} symbols) differs from "
                    f"{whose} {our_file} ({len(ours)} symbols); {_first_difference(theirs, ours)}"
                )
            continue
        weight = state["model"].get(key)
        if weight is not None and weight.size(0) != len(ours):
            raise SeqKDError(
                f"{what} {path}: its {side} dictionary has {weight.size(0)} symbols ({key}), {whose} "
                f"{our_file} has {len(ours)}"
            )
        logger.warning(
            "%s %s: %s dictionary file %s not found: only its size (%d) could be checked",
            what, path, side, their_file, len(ours),
        )


def load_model(path, task, what="checkpoint"):
    """A fairseq model from ``path`` in eval mode, built with ``task``'s dictionaries after checking them."""
    state = load_checkpoint_state(path, what=what)
    check_dictionaries(path, state, task, what=what)
    model_cfg = state["cfg"].model
    model = task.build_model(model_cfg, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=True, model_cfg=model_cfg)
    n = sum(p.numel() for p in model.parameters())
    logger.info("loaded %s %s (%s, %d parameters)", what, path, model.__class__.__name__, n)
    return model.eval()


def save_checkpoint(state, path):
    """Write ``state`` atomically, with ``cfg`` as plain containers as fairseq's trainer saves it
    (fairseq's loader turns it into an OmegaConf object, which torch's safe loading refuses)."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(state.get("cfg")):
        state["cfg"] = OmegaConf.to_container(state["cfg"], resolve=True, enum_to_str=True)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)

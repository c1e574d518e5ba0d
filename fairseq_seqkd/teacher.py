"""A frozen teacher: a fairseq model loaded once, checked against the student's data, never trained.

Used by the ``word_kd`` criterion (and the Seq-KD tools). The teacher is
held in a plain Python object, not as a submodule of the criterion, so
fairseq's trainer never adds its weights to the optimizer, never saves them
in the student's checkpoints, and ``criterion.train()`` cannot switch it out
of eval mode. It follows the student's device and dtype (``--fp16``,
``--bf16``, ``--cpu``) on first use.
"""

import logging
import os
import re

import torch

from fairseq_seqkd.textio import fail

logger = logging.getLogger(__name__)


def load_checkpoint_state(path, what="checkpoint"):
    """fairseq's ``load_checkpoint_to_cpu``, with one-line errors for a missing or foreign file."""
    from fairseq import checkpoint_utils

    if not os.path.isfile(path):
        fail(f"{what} {path}: no such file")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
    except Exception as e:  # torch.load / unpickling / fairseq upgrade errors
        detail = re.search(r"Unsupported global: [^ ]+ [^ ]+", str(e))
        fail(f"{what} {path}: not a fairseq checkpoint ({detail.group(0) if detail else type(e).__name__})")
    if not isinstance(state, dict) or "model" not in state or state.get("cfg") is None:
        fail(f"{what} {path}: not a fairseq checkpoint (no 'model' and 'cfg' entries)")
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


def check_dictionaries(path, state, task):
    """Stop unless the teacher's source and target dictionaries equal the student's task's.

    The checkpoint does not hold its dictionaries, only the data folder it was
    trained on: we compare symbol by symbol when that folder is still there,
    and at least the sizes (from the embedding shapes) otherwise.
    """
    from fairseq.data import Dictionary

    cfg = state["cfg"]
    student_cfg = task.cfg
    for side, ours, lang, key in (
        ("source", task.source_dictionary, getattr(student_cfg, "source_lang", None), "encoder.embed_tokens.weight"),
        ("target", task.target_dictionary, getattr(student_cfg, "target_lang", None), "decoder.embed_tokens.weight"),
    ):
        our_file = _dictionary_file(student_cfg, lang) or "the student's dictionary"
        teacher_lang = getattr(cfg.task, f"{side}_lang", None) or lang
        teacher_file = _dictionary_file(cfg.task, teacher_lang)
        if teacher_file and os.path.isfile(teacher_file):
            theirs = Dictionary.load(teacher_file)
            if theirs.symbols != ours.symbols:
                fail(
                    f"teacher {path}: its {side} dictionary {teacher_file} ({len(theirs)} symbols) differs from "
                    f"the student's {our_file} ({len(ours)} symbols); {_first_difference(theirs, ours)}"
                )
            continue
        weight = state["model"].get(key)
        if weight is not None and weight.size(0) != len(ours):
            fail(
                f"teacher {path}: its {side} dictionary has {weight.size(0)} symbols ({key}), the student's "
                f"{our_file} has {len(ours)}"
            )
        logger.warning(
            "teacher %s: %s dictionary file %s not found: only its size (%d) could be checked",
            path, side, teacher_file, len(ours),
        )


def load_model(path, task, what="checkpoint"):
    """A fairseq model from ``path``, built with ``task``'s dictionaries after checking they match."""
    state = load_checkpoint_state(path, what=what)
    check_dictionaries(path, state, task)
    model_cfg = state["cfg"].model
    model = task.build_model(model_cfg, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=True, model_cfg=model_cfg)
    n = sum(p.numel() for p in model.parameters())
    logger.info("loaded %s %s (%s, %d parameters)", what, path, model.__class__.__name__, n)
    return model.eval()


class FrozenTeacher:
    """A fairseq model in eval mode without gradients, following the student's device and dtype."""

    def __init__(self, model):
        self.model = model.eval()
        self.model.requires_grad_(False)
        self._placement = None

    @classmethod
    def load(cls, path, task):
        """Load ``path`` for a student trained on ``task`` (same dictionaries required)."""
        return cls(load_model(path, task, what="teacher"))

    def follow(self, param: torch.Tensor):
        """Put the teacher on ``param``'s device and floating-point dtype (once per change)."""
        placement = (param.device, param.dtype)
        if placement != self._placement:
            self.model.to(device=param.device, dtype=param.dtype)
            self._placement = placement
        return self

    @torch.no_grad()
    def logits(self, net_input):
        """The teacher's output logits (B x T x V) for the student's batch."""
        self.model.eval()
        return self.model(**net_input)[0]

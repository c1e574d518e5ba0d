"""A frozen teacher: a fairseq model loaded once, checked against the student's data, never trained.

Used by the ``word_kd`` criterion. The teacher is held in a plain Python
object, not as a submodule of the criterion, so fairseq's trainer never adds
its weights to the optimizer, never saves them in the student's checkpoints,
and ``criterion.train()`` cannot switch it out of eval mode. It follows the
student's device and dtype (``--fp16``, ``--bf16``, ``--cpu``) on first use.
"""

import torch

from fairseq_seqkd.checkpoints import load_model


class FrozenTeacher:
    """A fairseq model in eval mode without gradients, following the student's device and dtype."""

    def __init__(self, model):
        self.model = model.eval()
        self.model.requires_grad_(False)
        self._placement = None

    @classmethod
    def load(cls, path, task):
        """Load ``path`` for a student trained on ``task`` (same dictionaries required; SeqKDError if not)."""
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

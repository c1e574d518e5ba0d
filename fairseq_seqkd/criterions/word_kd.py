"""Word-level knowledge distillation (Kim & Rush 2016, §3.1; Hinton et al. 2015).

Per target position t, with the teacher's word distribution q and the student's p:

    loss = (1 - α) · Σ_t −log p(y_t)  +  α · T² · Σ_t Σ_v −q_T(v) log p_T(v)

where p_T, q_T are the distributions at temperature T (softmax of logits / T).
With ``--kd-topk k`` the teacher's distribution is cut to its k most probable
words and renormalised per position (the student's log-probabilities stay
those of the full softmax). Sums run over non-padding target tokens, like
fairseq's ``cross_entropy``; with α = 0 the loss is exactly that criterion's.

With ``--kd-topk-store STORE`` (built by ``seqkd-topk``, :mod:`fairseq_seqkd.topk_store`) training reads
the teacher's top k of each sentence from the memory-mapped store instead of running the teacher; the
loss is the live teacher's top-k loss up to the store's float16 rounding. Validation then runs the
teacher of ``--teacher-path`` if one is given, else reports the gold-word loss only.
"""

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from fairseq_seqkd.errors import SeqKDError, exit_on_error
from fairseq_seqkd.multi_target import OneTargetPerSource
from fairseq_seqkd.teacher import FrozenTeacher
from fairseq_seqkd.textio import file_sha256
from fairseq_seqkd.topk_store import TopKStore, dictionary_digest


@dataclass
class WordKDConfig(FairseqDataclass):
    teacher_path: str = field(
        default="", metadata={"help": "fairseq checkpoint of the teacher (any architecture; same dictionaries)"}
    )
    kd_alpha: float = field(
        default=0.5, metadata={"help": "weight α of the distillation term; 1 - α weighs the gold-word NLL"}
    )
    kd_temperature: float = field(
        default=1.0, metadata={"help": "softmax temperature T of teacher and student in the distillation term"}
    )
    kd_topk: int = field(
        default=0, metadata={"help": "use only the teacher's k most probable words per position (0: all)"}
    )
    kd_topk_store: str = field(
        default="", metadata={"help": "train with the teacher's top k read from this store (built by seqkd-topk for "
                                      "the training split) instead of running the teacher; --teacher-path is then "
                                      "only used for validation"}
    )
    kd_cache: bool = field(
        default=False, metadata={"help": "removed: build a top-k store with seqkd-topk and pass --kd-topk-store"}
    )
    sentence_avg: bool = II("optimization.sentence_avg")


def word_kd_loss(student_logits, target, padding_idx, alpha, temperature=1.0, teacher_logits=None,
                 teacher_topk=None):
    """The Word-KD loss and its two terms (each summed over non-padding targets).

    The teacher comes either as full logits (B x T x V) or as ``teacher_topk``,
    the ``(values, indices)`` of its k largest logits per position. Returns
    ``(loss, nll, kd)``; ``kd`` is None when α = 0 (no teacher needed).
    Computed in float32 whatever the models' dtype.
    """
    lprobs = utils.log_softmax(student_logits, dim=-1)  # float32
    vocab = lprobs.size(-1)
    nll = F.nll_loss(lprobs.view(-1, vocab), target.view(-1), ignore_index=padding_idx, reduction="sum")
    if alpha == 0:
        return nll, nll, None
    student_t = lprobs if temperature == 1 else utils.log_softmax(student_logits / temperature, dim=-1)
    if teacher_topk is not None:
        top_logits, top_index = teacher_topk
        q = F.softmax(top_logits.float() / temperature, dim=-1)  # renormalised over the k words
        per_token = -(q * student_t.gather(-1, top_index)).sum(-1)
    else:
        q = F.softmax(teacher_logits.float() / temperature, dim=-1)
        per_token = -(q * student_t).sum(-1)
    kd = per_token.masked_fill(target.eq(padding_idx), 0.0).sum() * (temperature**2)
    return (1 - alpha) * nll + alpha * kd, nll, kd


@register_criterion("word_kd", dataclass=WordKDConfig)
class WordKDCriterion(FairseqCriterion):
    """Cross-entropy to the gold words mixed with cross-entropy to a frozen teacher's distribution."""

    def __init__(self, task, teacher_path, kd_alpha, kd_temperature, kd_topk, sentence_avg, kd_cache=False,
                 kd_topk_store=""):
        super().__init__(task)
        self.alpha = kd_alpha
        self.temperature = kd_temperature
        self.topk = kd_topk
        self.sentence_avg = sentence_avg
        self.store = self._split_checked = None
        with exit_on_error():  # fairseq-train builds the criterion: a one-line error, not a traceback
            self._check_options(task, teacher_path, kd_cache, kd_topk_store)
            if kd_topk_store:
                self.store = self._open_store(kd_topk_store, task, teacher_path)
                self.topk = self.store.k
            # Not an nn.Module attribute on purpose: see fairseq_seqkd.teacher.
            self.teacher = FrozenTeacher.load(teacher_path, task) if teacher_path else None

    def _check_options(self, task, teacher_path, kd_cache, kd_topk_store):
        if kd_cache:
            raise SeqKDError("--kd-cache was removed: build the teacher's top k once with seqkd-topk DATA --path "
                             "TEACHER.pt --k K --out STORE, then train with --kd-topk-store STORE")
        if not 0 <= self.alpha <= 1:
            raise SeqKDError(f"--kd-alpha {self.alpha}: must be in [0, 1]")
        if not self.temperature > 0:
            raise SeqKDError(f"--kd-temperature {self.temperature}: must be > 0")
        vocab = len(task.target_dictionary)
        if not 0 <= self.topk <= vocab:
            raise SeqKDError(f"--kd-topk {self.topk}: must be between 0 and the target vocabulary size {vocab}")
        data = getattr(task.cfg, "data", "") or ""
        if kd_topk_store and len([p for p in data.split(os.pathsep) if p]) > 1:
            raise SeqKDError(f"--kd-topk-store with sharded data ({data}): sentence ids restart in every shard, so "
                             f"one store cannot serve them; give one data folder")
        if not teacher_path and not kd_topk_store:
            raise SeqKDError("--criterion word_kd needs --teacher-path TEACHER.pt (or --kd-topk-store STORE)")

    def _open_store(self, path, task, teacher_path):
        """The store, checked against the k, dictionaries and teacher of this run (its split is checked at
        the first training batch, once the training data is loaded)."""
        store = TopKStore.open(path)
        if self.topk and self.topk != store.k:
            raise SeqKDError(f"--kd-topk-store {path}: holds the top {store.k}, --kd-topk is {self.topk}")
        for side, dictionary in (("source", task.source_dictionary), ("target", task.target_dictionary)):
            store.check(f"{side}_dictionary_sha256", dictionary_digest(dictionary),
                        f"built with another {side} dictionary than this run's ({len(dictionary)} symbols)")
        if teacher_path:
            if not os.path.isfile(teacher_path):
                raise SeqKDError(f"teacher {teacher_path}: no such file")
            store.check("teacher_sha256", file_sha256(teacher_path),
                        f"built from another teacher ({store.header.get('teacher')}, sha256 "
                        f"{store.header.get('teacher_sha256', '')[:12]}...) than --teacher-path {teacher_path}")
        return store

    def forward(self, model, sample, reduce=True):
        teacher_logits = teacher_topk = None
        alpha = self.alpha
        if alpha > 0:
            if self.store is not None and model.training:
                with exit_on_error():
                    teacher_topk = self._stored_topk(sample)
            elif self.teacher is None:
                alpha = 0.0  # validation with a store and no teacher: the gold-word loss only
            else:
                # The teacher runs first: with --kd-topk its full logits are gone
                # before the student's graph is built, which lowers peak memory.
                self.teacher.follow(next(model.parameters()))
                teacher_logits = self.teacher.logits(sample["net_input"])
                if self.topk:
                    teacher_topk = teacher_logits.topk(self.topk, dim=-1)
                    teacher_logits = None
        net_output = model(**sample["net_input"])
        target = model.get_targets(sample, net_output)
        loss, nll, kd = word_kd_loss(
            net_output[0], target, self.padding_idx, alpha, self.temperature, teacher_logits, teacher_topk
        )
        sample_size = sample["target"].size(0) if self.sentence_avg else sample["ntokens"]
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll.data,
            "ntokens": sample["ntokens"],
            "nsentences": sample["target"].size(0),
            "sample_size": sample_size,
        }
        if kd is not None:
            logging_output["kd_loss"] = kd.data
        return loss, sample_size, logging_output

    def _stored_topk(self, sample):
        """The store's top k (log-probabilities, word ids) at the target tokens of a training batch, put
        back wherever the padding puts them (left-padded targets too); zeros at padding."""
        self._check_split()
        target = sample["target"]
        tokens = target.ne(self.padding_idx)
        values, ids = self.store.gather(sample["id"].cpu().numpy(), tokens.sum(1).cpu().numpy())
        top_values = target.new_zeros(*target.shape, self.topk, dtype=torch.float32)
        top_index = target.new_zeros(*target.shape, self.topk, dtype=torch.long)
        top_values[tokens] = torch.from_numpy(values.astype(np.float32)).to(target.device)
        top_index[tokens] = torch.from_numpy(ids.astype(np.int64)).to(target.device)
        return top_values, top_index

    def _check_split(self):
        """Refuse a store built for another split than the one being trained on (once per dataset).

        The store is keyed by a pair's index in the split on disk, which is the ``id`` of its batch row. With
        ``--one-target-per-epoch`` the training dataset is a :class:`OneTargetPerSource` over that split: its
        items (and ``id``) are the split's own, only the pairs of an epoch change, so the store built for
        all N pairs of the split serves every epoch's choice; it is checked against the wrapped split."""
        subset = self.task.cfg.train_subset
        dataset = self.task.dataset(subset)
        if dataset is not self._split_checked:
            pairs = dataset.dataset if isinstance(dataset, OneTargetPerSource) else dataset
            self.store.check_split(pairs.tgt, len(pairs), self.task.cfg.data, subset)
            self._split_checked = dataset

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        nll_sum = sum(log.get("nll_loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        # base 2, like fairseq's criterions
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
        if any("kd_loss" in log for log in logging_outputs):
            kd_sum = sum(log.get("kd_loss", 0) for log in logging_outputs)
            metrics.log_scalar("kd_loss", kd_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True

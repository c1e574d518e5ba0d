"""Word-level knowledge distillation (Kim & Rush 2016, §3.1; Hinton et al. 2015).

Per target position t, with the teacher's word distribution q and the student's p:

    loss = (1 - α) · Σ_t −log p(y_t)  +  α · T² · Σ_t Σ_v −q_T(v) log p_T(v)

where p_T, q_T are the distributions at temperature T (softmax of logits / T).
With ``--kd-topk k`` the teacher's distribution is cut to its k most probable
words and renormalised per position (the student's log-probabilities stay
those of the full softmax). Sums run over non-padding target tokens, like
fairseq's ``cross_entropy``; with α = 0 the loss is exactly that criterion's.
"""

import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from omegaconf import II

from fairseq_seqkd.errors import SeqKDError, exit_on_error
from fairseq_seqkd.teacher import FrozenTeacher


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
    kd_cache: bool = field(
        default=False,
        metadata={"help": "with --kd-topk: keep the teacher's top k for every training sentence the first time "
                          "it is seen and reuse it in later epochs, so the teacher runs once per sentence "
                          "(memory: 8 bytes x k x target tokens, on the CPU)"},
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

    def __init__(self, task, teacher_path, kd_alpha, kd_temperature, kd_topk, sentence_avg, kd_cache=False):
        super().__init__(task)
        self.alpha = kd_alpha
        self.temperature = kd_temperature
        self.topk = kd_topk
        self.sentence_avg = sentence_avg
        with exit_on_error():  # fairseq-train builds the criterion: a one-line error, not a traceback
            self._check_options(task, teacher_path, kd_cache)
            # Not an nn.Module attribute on purpose: see fairseq_seqkd.teacher.
            self.teacher = FrozenTeacher.load(teacher_path, task)
        self.cache = {} if kd_cache else None  # sentence id -> (top-k logits, indices) of its target tokens

    def _check_options(self, task, teacher_path, kd_cache):
        if not 0 <= self.alpha <= 1:
            raise SeqKDError(f"--kd-alpha {self.alpha}: must be in [0, 1]")
        if not self.temperature > 0:
            raise SeqKDError(f"--kd-temperature {self.temperature}: must be > 0")
        vocab = len(task.target_dictionary)
        if not 0 <= self.topk <= vocab:
            raise SeqKDError(f"--kd-topk {self.topk}: must be between 0 and the target vocabulary size {vocab}")
        if kd_cache and not self.topk:
            raise SeqKDError("--kd-cache needs --kd-topk K (the cache holds the teacher's top K words per position)")
        data = getattr(task.cfg, "data", "") or ""
        if kd_cache and len([p for p in data.split(os.pathsep) if p]) > 1:
            raise SeqKDError(f"--kd-cache with sharded data ({data}): sentence ids restart in every shard, so the "
                             f"cache would mix their sentences; give one data folder, or drop --kd-cache")
        if not teacher_path:
            raise SeqKDError("--criterion word_kd needs --teacher-path TEACHER.pt")

    def forward(self, model, sample, reduce=True):
        teacher_logits = teacher_topk = None
        if self.alpha > 0:
            # The teacher runs first: with --kd-topk its full logits are gone
            # before the student's graph is built, which lowers peak memory.
            self.teacher.follow(next(model.parameters()))
            if self.cache is not None and model.training:
                with exit_on_error():
                    teacher_topk = self._cached_topk(sample)
            else:
                teacher_logits = self.teacher.logits(sample["net_input"])
                if self.topk:
                    teacher_topk = teacher_logits.topk(self.topk, dim=-1)
                    teacher_logits = None
        net_output = model(**sample["net_input"])
        target = model.get_targets(sample, net_output)
        loss, nll, kd = word_kd_loss(
            net_output[0], target, self.padding_idx, self.alpha, self.temperature, teacher_logits, teacher_topk
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

    def _cached_topk(self, sample):
        """The teacher's top-k for a training batch, running it only on sentences not seen before.

        Keyed by the dataset index, so only used in training (validation ids overlap) and with one data
        folder (checked when the criterion is built). A sentence's entry holds the values of its target
        tokens only, wherever the padding is (left-padded targets too).
        """
        ids = sample["id"].tolist()
        target = sample["target"]
        tokens = target.ne(self.padding_idx)
        missing = [row for row, sid in enumerate(ids) if sid not in self.cache]
        if missing:
            rows = torch.tensor(missing, device=target.device)
            net_input = {k: v.index_select(0, rows) if torch.is_tensor(v) and v.dim() > 0 else v
                         for k, v in sample["net_input"].items()}
            longest = int(net_input["src_lengths"].max())  # drop padding columns the kept rows do not need
            src = net_input["src_tokens"]
            left_pad = getattr(self.task.cfg, "left_pad_source", True)
            net_input["src_tokens"] = src[:, src.size(1) - longest:] if left_pad else src[:, :longest]
            values, index = self.teacher.logits(net_input).topk(self.topk, dim=-1)
            for j, row in enumerate(missing):
                keep = tokens[row]
                self.cache[ids[row]] = (values[j, keep].float().cpu(), index[j, keep].int().cpu())
        values = torch.zeros(*target.shape, self.topk, dtype=torch.float32)
        index = torch.zeros(*target.shape, self.topk, dtype=torch.long)
        for row, sid in enumerate(ids):
            v, i = self.cache[sid]
            keep = tokens[row].cpu()
            if int(keep.sum()) != v.size(0):
                raise SeqKDError(f"--kd-cache: sentence {sid} has {int(keep.sum())} target tokens, its cache entry "
                                 f"{v.size(0)}: the training data changed under the cache")
            values[row, keep] = v
            index[row, keep] = i.long()
        return values.to(target.device), index.to(target.device)

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

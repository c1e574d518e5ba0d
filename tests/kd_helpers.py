"""Helpers of the word_kd tests: the task, a student, a batch with padding, an independent oracle."""

import argparse
import math

import torch
from fairseq.models import ARCH_CONFIG_REGISTRY

from fairseq_seqkd.criterions.word_kd import WordKDCriterion
from fairseq_seqkd.tasks.seqkd_translation import SeqKDTranslationConfig, SeqKDTranslationTask


def load_task(data, **cfg):
    cfg = SeqKDTranslationConfig(data=data, dataset_impl=None, required_seq_len_multiple=1, train_subset="train",
                                 **cfg)
    return SeqKDTranslationTask.setup_task(cfg)


def fresh_student(task, seed=3, arch="luong_lstm_1x32", **overrides):
    torch.manual_seed(seed)
    args = argparse.Namespace(arch=arch, criterion="word_kd", **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return task.build_model(args).eval()


def a_batch(task, split="valid", n=12, order=None):
    """``n`` sentences of every target length of ``split`` (so the batch has padding), collated as fairseq
    does; ``order`` permutes them."""
    task.load_dataset(split)
    ds = task.dataset(split)
    by_length = sorted(range(len(ds)), key=lambda i: (int(ds.tgt_sizes[i]), i))
    ids = [by_length[round(k * (len(ds) - 1) / (n - 1))] for k in range(n)]
    sample = ds.collater([ds[i] for i in (ids if order is None else [ids[k] for k in order])])
    assert len(set(ds.tgt_sizes[ids].tolist())) > 3  # targets of several lengths
    return sample


def criterion(task, teacher, alpha=0.5, temperature=1.0, topk=0, sentence_avg=False):
    return WordKDCriterion(task, teacher, alpha, temperature, topk, sentence_avg)


def oracle_loss(student_logits, teacher_logits, target, pad, alpha, temperature, topk):
    """Independent float64 computation, one target position at a time."""
    total = 0.0
    s_all, t_all = student_logits.double(), teacher_logits.double()
    for b in range(target.size(0)):
        for i in range(target.size(1)):
            y = int(target[b, i])
            if y == pad:
                continue
            s, t = s_all[b, i], t_all[b, i]
            p = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
            p_t = torch.exp((s - s.max()) / temperature)
            p_t = p_t / p_t.sum()
            q_t = torch.exp((t - t.max()) / temperature)
            q_t = q_t / q_t.sum()
            if topk:
                keep = torch.argsort(q_t, descending=True)[:topk]
                w = torch.zeros_like(q_t)
                w[keep] = q_t[keep] / q_t[keep].sum()
            else:
                w = q_t
            kd = -(w * torch.log(p_t)).sum() * temperature**2
            total += (1 - alpha) * -math.log(p[y]) + alpha * float(kd)
    return total

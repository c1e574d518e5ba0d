"""Greedy and beam search that choose what fairseq's ``SequenceGenerator`` chooses.

fairseq's beam search (``fairseq/sequence_generator.py`` with ``search.BeamSearch``) is replayed rule
for rule: the 2K best (hypothesis, word) candidates by cumulative log-probability, hypotheses that end
in </s> among the first K finalised with the score ``sum / (length + 1) ** lenpen`` until K are
finished, the next K hypotheses taken from the remaining candidates in order, </s> forced at the
length limit and forbidden before ``min_len``, <pad> never chosen, the best finished hypothesis
picked with the same sort. Scores go through the same float32 operations, so ties resolve the same
way. Greedy search is the case K = 1 (the best word by cumulative score, ending at </s>), without
the bookkeeping of K hypotheses.

The bookkeeping of the few candidates per sentence is plain Python; the tensors are only the
network's rows (one per hypothesis), reordered in place.
"""

import math
from typing import List, NamedTuple

import torch
import torch.nn.functional as F

NEG_INF = -math.inf


class Hypothesis(NamedTuple):
    """A translation: target ids without the final </s>, and fairseq's score (natural log)."""

    tokens: List[int]
    score: float


def search(net, enc, max_lens: List[int], beam: int = 1, lenpen: float = 1.0, min_len: int = 1,
           eos: int = 2) -> List[Hypothesis]:
    """The best hypothesis for each sentence of the encoded batch ``enc``.

    ``max_lens[i]``: the most words sentence i may get before </s> (fairseq's ``max_len``).
    """
    return [hyps[0] for hyps in search_nbest(net, enc, max_lens, beam, 1, lenpen, min_len, eos)]


def search_nbest(net, enc, max_lens: List[int], beam: int = 1, nbest: int = 1, lenpen: float = 1.0,
                 min_len: int = 1, eos: int = 2) -> List[List[Hypothesis]]:
    """The ``nbest`` best finished hypotheses of each sentence (at most ``beam``), best first, as
    fairseq-generate's ``--nbest`` lists them."""
    beam = min(beam, net.vocab_size - 1)  # as fairseq: pad is never chosen
    if beam == 1:
        return [[h] for h in _greedy(net, enc, max_lens, lenpen, min_len, eos)]
    return _beam(net, enc, max_lens, beam, lenpen, min_len, eos, nbest)


def _log_probs(net, tokens, state, step, max_lens, sentences, min_len, eos, rows_per_sentence):
    """Log-probabilities of the next word for every row, with fairseq's constraints applied."""
    lprobs = F.log_softmax(net.step(tokens, state), dim=-1, dtype=torch.float32)
    lprobs[:, net.target_pad] = NEG_INF
    for b, s in enumerate(sentences):
        if step >= max_lens[s]:  # only </s> is left
            rows = slice(b * rows_per_sentence, (b + 1) * rows_per_sentence)
            lprobs[rows, :eos] = NEG_INF
            lprobs[rows, eos + 1:] = NEG_INF
    if step < min_len:
        lprobs[:, eos] = NEG_INF
    return lprobs


def _normalized(values: torch.Tensor, step: int, lenpen: float) -> List[float]:
    """fairseq's ``eos_scores /= (step + 1) ** len_penalty`` on float32 scores."""
    values = values.clone()
    values /= (step + 1) ** lenpen
    return values.tolist()


def _greedy(net, enc, max_lens, lenpen, min_len, eos):
    n = len(max_lens)
    device = net.device
    state = net.start(enc, torch.arange(n, device=device))
    sentences = list(range(n))  # the sentence of each row
    history = [[] for _ in range(n)]
    results = [None] * n
    tokens = torch.full((n,), eos, dtype=torch.long, device=device)
    cumulative = None
    k = min(2, net.vocab_size - 1)
    for step in range(max(max_lens) + 1):
        lprobs = _log_probs(net, tokens, state, step, max_lens, sentences, min_len, eos, 1)
        if cumulative is not None:
            lprobs = lprobs + cumulative.unsqueeze(1)
        values, words = torch.topk(lprobs, k)
        values, words = values[:, 0], words[:, 0]
        best = words.tolist()
        done = [r for r, w in enumerate(best) if w == eos]
        if done:
            finite = values.index_select(0, torch.tensor(done, device=device))
            scores = _normalized(finite, step, lenpen)
            for r, score in zip(done, scores):
                if score != NEG_INF:
                    results[sentences[r]] = Hypothesis(history[sentences[r]], score)
            keep = [r for r, w in enumerate(best) if results[sentences[r]] is None]
            if not keep:
                break
            index = torch.tensor(keep, device=device)
            state.select(index, sentences_changed=True)
            sentences = [sentences[r] for r in keep]
            words, values = words.index_select(0, index), values.index_select(0, index)
            best = [best[r] for r in keep]
        for s, w in zip(sentences, best):
            history[s].append(w)
        tokens, cumulative = words, values
    return results


def _beam(net, enc, max_lens, beam, lenpen, min_len, eos, nbest=1):
    n = len(max_lens)
    vocab = net.vocab_size
    device = net.device
    state = net.start(enc, torch.arange(n, device=device).repeat_interleave(beam))
    sentences = list(range(n))
    history = [[[] for _ in range(beam)] for _ in range(n)]
    finalized = [[] for _ in range(n)]
    ignore = [[False] * beam for _ in range(n)]  # fairseq's cands_to_ignore
    tokens = torch.full((n * beam,), eos, dtype=torch.long, device=device)
    cumulative = None
    cand_size = 2 * beam
    for step in range(max(max_lens) + 1):
        bsz = len(sentences)
        lprobs = _log_probs(net, tokens, state, step, max_lens, sentences, min_len, eos, beam)
        lprobs = lprobs.view(bsz, beam, vocab)
        if step == 0:  # all hypotheses are the same: take the first
            lprobs = lprobs[:, ::beam, :].contiguous()
        else:
            lprobs = lprobs + cumulative.view(bsz, beam, 1)
        flat = lprobs.view(bsz, -1)
        values, indices = torch.topk(flat, min(cand_size, flat.size(1) - 1))
        beams = torch.div(indices, vocab, rounding_mode="trunc").tolist()
        words = indices.fmod(vocab).tolist()
        scores = values.tolist()
        k = len(scores[0])

        # hypotheses ending in </s> among the first `beam` candidates are finished
        eos_mask = [[words[b][j] == eos and scores[b][j] != NEG_INF for j in range(k)] for b in range(bsz)]
        ended = []
        for b, s in enumerate(sentences):
            for j in range(beam):
                if ignore[s][j]:
                    eos_mask[b][j] = False
                elif eos_mask[b][j]:
                    ended.append((b, j))
        if ended:
            normalized = _normalized(values[:, :beam][torch.tensor(eos_mask, device=device)[:, :beam]], step, lenpen)
            for (b, j), score in zip(ended, normalized):
                s = sentences[b]
                if len(finalized[s]) < beam:
                    finalized[s].append(Hypothesis(history[s][beams[b][j]] + [eos], score))
        keep = [b for b, s in enumerate(sentences)
                if not (any(bb == b for bb, _ in ended) and (len(finalized[s]) == beam or step == max_lens[s]))]
        if not keep:
            break

        # the next hypotheses: the first `beam` candidates that did not end
        rows, next_words, next_scores = [], [], []
        for b in keep:
            s = sentences[b]
            mask = eos_mask[b]
            for j in range(beam):
                mask[j] = mask[j] or ignore[s][j]
            chosen = sorted(range(k), key=lambda j: mask[j] * cand_size + j)[:beam]
            ignore[s] = [mask[j] for j in chosen]
            history[s] = [history[s][beams[b][j]] + [words[b][j]] for j in chosen]
            rows += [b * beam + beams[b][j] for j in chosen]
            next_words += [words[b][j] for j in chosen]
            next_scores += [scores[b][j] for j in chosen]
        state.select(torch.tensor(rows, device=device), sentences_changed=len(keep) < bsz)
        sentences = [sentences[b] for b in keep]
        tokens = torch.tensor(next_words, device=device)
        cumulative = torch.tensor(next_scores, dtype=torch.float32, device=device)

    best = []
    for hyps in finalized:  # fairseq sorts the finished hypotheses by score, descending
        order = torch.sort(torch.tensor([h.score for h in hyps]), descending=True)[1][:nbest].tolist()
        best.append([Hypothesis(hyps[i].tokens[:-1], hyps[i].score) for i in order])
    return best

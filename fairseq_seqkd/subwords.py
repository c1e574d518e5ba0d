"""Subword text to words, exactly as fairseq's ``--post-process`` (``data_utils.post_process``) does it.

Used before sentence BLEU (Seq-Inter) and corpus BLEU (evaluation), so that both score the same
words that fairseq-generate prints with ``--post-process``.
"""

from typing import List

#: the ``--remove-bpe`` choices of our scripts (fairseq's --post-process names)
REMOVE_BPE = ("sentencepiece", "subword_nmt", "none")


def remove_subwords(text: str, remove_bpe: str) -> str:
    """One line of subword text as words."""
    if remove_bpe == "sentencepiece":  # the common case, inlined: it runs for every hypothesis
        return text.replace(" ", "").replace("\u2581", " ").strip()
    if remove_bpe == "none":
        return text
    from fairseq.data.data_utils import post_process

    return post_process(text, remove_bpe)


def remove_subwords_all(texts, remove_bpe: str) -> List[str]:
    """``[remove_subwords(t, remove_bpe) for t in texts]`` up to the whitespace at either end (which BLEU
    ignores), in one pass for SentencePiece."""
    if remove_bpe == "sentencepiece" and texts:  # texts are lines: no newlines
        return "\n".join(texts).replace(" ", "").replace("\u2581", " ").split("\n")
    return [remove_subwords(t, remove_bpe) for t in texts]

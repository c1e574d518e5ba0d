"""Deploying a student: export it as a self-contained directory, decode it without fairseq.

:mod:`~fairseq_seqkd.deploy.export` (``seqkd-export``) needs fairseq; everything else here needs
only torch (and sentencepiece for raw-text input): :mod:`~fairseq_seqkd.deploy.bundle` (the
directory), :mod:`~fairseq_seqkd.deploy.network` (the LSTM), :mod:`~fairseq_seqkd.deploy.search`
(fairseq's greedy and beam search) and :mod:`~fairseq_seqkd.deploy.translator` (``seqkd-translate``).
"""

"""The ``seqkd_translation`` task: fairseq's translation task plus the hooks Seq-KD needs.

* Every batch iterator uses ``required_batch_size_multiple=1``. The fairseq
  build we depend on (fairseq-fixed 0.12.3.1) drops the last batch of an
  epoch when its size is not a multiple of that value (default 8): with
  ``--task translation``, fairseq-generate silently skips up to 7 test
  sentences and training never sees the same few longest pairs. Distilled
  corpora must not lose lines, so this task never drops a batch.
"""

import logging
from dataclasses import dataclass

from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

logger = logging.getLogger(__name__)


@dataclass
class SeqKDTranslationConfig(TranslationConfig):
    pass


@register_task("seqkd_translation", dataclass=SeqKDTranslationConfig)
class SeqKDTranslationTask(TranslationTask):
    """Translation (``--task seqkd_translation``) that never drops a batch."""

    def get_batch_iterator(self, dataset, *args, required_batch_size_multiple=1, **kwargs):
        if required_batch_size_multiple != 1 and not getattr(self, "_warned_bsz_mult", False):
            logger.info(
                "using required_batch_size_multiple=1 instead of %d: fairseq would drop the last "
                "batch of each epoch otherwise", required_batch_size_multiple
            )
            self._warned_bsz_mult = True
        return super().get_batch_iterator(dataset, *args, required_batch_size_multiple=1, **kwargs)

"""Binarize subword text for fairseq (``fairseq-preprocess``, run as a library), into a folder that appears
complete or not at all.

Used by seqkd-prepare (new dictionaries from the training text) and seqkd-distill (the distilled corpus
with the original data's dictionaries, its valid/test sets copied alongside).
"""

import logging
import os
import shutil

logger = logging.getLogger(__name__)


def binarize(dest, src_lang, tgt_lang, trainpref, validpref=None, testpref=None, srcdict=None, tgtdict=None,
             copy_from=None, workers=1):
    """fairseq-preprocess ``trainpref`` (and ``validpref``, ``testpref``) into ``dest``.

    With ``srcdict``/``tgtdict`` the given dictionaries are used, else fairseq builds them from the
    training text. ``copy_from``: a binarized data folder whose files other than the training split and
    the dictionaries (its valid/test sets) are copied into ``dest``. Everything is written into a staging
    folder that replaces ``dest`` only at the end.
    """
    from fairseq import options
    from fairseq_cli import preprocess

    staging = dest.rstrip("/") + ".tmp"
    if os.path.exists(staging):
        shutil.rmtree(staging)  # a leftover of an interrupted run
    argv = ["--source-lang", src_lang, "--target-lang", tgt_lang, "--trainpref", trainpref, "--destdir", staging,
            "--workers", str(workers)]
    for flag, value in (("--validpref", validpref), ("--testpref", testpref), ("--srcdict", srcdict),
                        ("--tgtdict", tgtdict)):
        if value:
            argv += [flag, value]
    preprocess.main(options.get_preprocessing_parser().parse_args(argv))
    if copy_from:
        for name in os.listdir(copy_from):
            if not name.startswith(("train.", "dict.", "preprocess.log")):
                shutil.copy(os.path.join(copy_from, name), staging)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(staging, dest)
    logger.info("binarized into %s (train from %s.{%s,%s}%s)", dest, trainpref, src_lang, tgt_lang,
                f"; valid/test from {copy_from}" if copy_from else "")
    return dest

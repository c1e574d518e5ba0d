"""Binarize subword text for fairseq (``fairseq-preprocess``, run as a library), into a folder that appears
complete or not at all.

Used by seqkd-prepare (new dictionaries from the training text), seqkd-distill (the distilled corpus
with the original data's dictionaries, its valid/test sets copied alongside) and seqkd-select --binarize
(a selection from K-best lists, the same way).
"""

import logging
import os
import re
import shutil
import tempfile

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_dir

logger = logging.getLogger(__name__)

#: A training split's files: ``train.*`` and the extra shards fairseq loads beside it (``train1.*``, ...).
_TRAIN_FILE = re.compile(r"^train\d*\.")


def copied_from_data(name):
    """Whether a file of the original data folder goes into the new one: not its training split and extra
    training shards (they would be loaded beside the new training data), dictionaries or log, nor a hidden
    file (an editor's or a tool's own)."""
    return not (_TRAIN_FILE.match(name) or name.startswith(("dict.", "preprocess.log", ".")))


def data_files_to_copy(folder):
    """The names of the files of the binarized data folder ``folder`` that a new data folder made from it
    gets (:func:`copied_from_data`), sorted: its plain files only (a link to a file counts as the file it
    names). Folders (a top-k store such as ``DATA/topk8``, shard folders left by seqkd-topk) and anything
    else that is not a file (a broken link, a pipe) are left out: fairseq reads only files of a data
    folder, at its top level (``SPLIT.SRC-TGT.LANG.{bin,idx}``)."""
    names, skipped = [], []
    for name in sorted(os.listdir(folder)):
        if copied_from_data(name):
            (names if os.path.isfile(os.path.join(folder, name)) else skipped).append(name)
    if skipped:
        logger.info("not copied from %s (not files): %s", folder, ", ".join(skipped))
    return names


def binarize(dest, src_lang, tgt_lang, trainpref, validpref=None, testpref=None, srcdict=None, tgtdict=None,
             copy_from=None, workers=1, extra_files=None):
    """fairseq-preprocess ``trainpref`` (and ``validpref``, ``testpref``) into ``dest``.

    With ``srcdict``/``tgtdict`` the given dictionaries are used, else fairseq builds them from the
    training text. ``copy_from``: a binarized data folder whose plain files other than the training split
    and the dictionaries (its valid/test sets; not ``train1.*``, ``train2.*``, ..., which fairseq would load
    as training data; no folder or hidden file, see :func:`data_files_to_copy`) are copied into ``dest``.
    Everything is written into a temporary folder that replaces ``dest`` only at the end
    (:func:`~fairseq_seqkd.textio.atomic_dir`). ``extra_files``: {name in ``dest``: file to copy there}
    (seqkd-distill's ``train.ids``), copied into the same temporary folder.
    """
    from fairseq import options
    from fairseq_cli import preprocess

    with atomic_dir(dest) as staging:
        argv = ["--source-lang", src_lang, "--target-lang", tgt_lang, "--trainpref", trainpref, "--destdir",
                staging, "--workers", str(workers)]
        for flag, value in (("--validpref", validpref), ("--testpref", testpref), ("--srcdict", srcdict),
                            ("--tgtdict", tgtdict)):
            if value:
                argv += [flag, value]
        preprocess.main(options.get_preprocessing_parser().parse_args(argv))
        if copy_from:
            for name in data_files_to_copy(copy_from):
                shutil.copy(os.path.join(copy_from, name), staging)
        for name, path in (extra_files or {}).items():
            shutil.copy(path, os.path.join(staging, name))
    logger.info("binarized into %s (train from %s.{%s,%s}%s)", dest, trainpref, src_lang, tgt_lang,
                f"; valid/test from {copy_from}" if copy_from else "")
    return dest


def binarize_source_only(data, split, src_lang, tgt_lang, text, workers=1):
    """The subword text file ``text`` binarized with the data folder ``data``'s source dictionary into ``data``
    as the split ``split`` of source sentences only (``SPLIT.SRC-TGT.SRC.{bin,idx}``, fairseq-preprocess
    --only-source): no target file, so fairseq loads the split with no references (``target`` None), and a
    target file of that split already there is refused. The index is renamed into place last."""
    from fairseq import options
    from fairseq_cli import preprocess

    srcdict = os.path.join(data, f"dict.{src_lang}.txt")
    if not os.path.isfile(srcdict):
        raise SeqKDError(f"{srcdict}: no such file (the source dictionary of {data})")
    stem = f"{split}.{src_lang}-{tgt_lang}"
    if any(os.path.exists(os.path.join(data, f"{stem}.{tgt_lang}.{ext}")) for ext in ("bin", "idx")):
        raise SeqKDError(f"{data}/{stem}.{tgt_lang}.bin: the split {split} has references there; a source-only "
                         f"split must have none")
    with tempfile.TemporaryDirectory(prefix=".binarize-", dir=data) as scratch:
        os.symlink(os.path.abspath(text), os.path.join(scratch, f"text.{src_lang}"))
        argv = ["--only-source", "--source-lang", src_lang, "--target-lang", tgt_lang, "--trainpref",
                os.path.join(scratch, "text"), "--destdir", os.path.join(scratch, "out"), "--srcdict", srcdict,
                "--workers", str(workers)]
        preprocess.main(options.get_preprocessing_parser().parse_args(argv))
        for ext in ("bin", "idx"):
            os.replace(os.path.join(scratch, "out", f"train.{src_lang}-{tgt_lang}.{src_lang}.{ext}"),
                       os.path.join(data, f"{stem}.{src_lang}.{ext}"))
    logger.info("binarized %s into %s as the source-only split %s", text, data, split)


def binarize_like_data(dest, data, src_file, tgt_file, src_lang=None, tgt_lang=None, ids_file=None):
    """Two line-aligned text files (any names, e.g. seqkd-select's outputs) binarized into ``dest`` as its
    training split, with the binarized data folder ``data``'s dictionaries and its valid/test sets copied
    alongside, as seqkd-distill --binarize does; ``ids_file`` (each line's sentence id) becomes
    ``dest/train.ids``. The languages default to ``data``'s (fairseq's inference from its file names)."""
    from fairseq.data.data_utils import infer_language_pair

    if not os.path.isdir(data):
        raise SeqKDError(f"{data}: no such data folder")
    if not (src_lang and tgt_lang):
        inferred = infer_language_pair(data)
        if None in inferred:
            raise SeqKDError(f"{data}: cannot infer the language pair from its file names; give the languages")
        src_lang, tgt_lang = src_lang or inferred[0], tgt_lang or inferred[1]
    dicts = [os.path.join(data, f"dict.{lang}.txt") for lang in (src_lang, tgt_lang)]
    for path in [*dicts, src_file, tgt_file, *([ids_file] if ids_file else [])]:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file")
    # fairseq-preprocess reads PREFIX.SRC and PREFIX.TGT: links of those names to the two files
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".binarize-", dir=parent) as links:
        prefix = os.path.join(links, "train")
        for lang, path in ((src_lang, src_file), (tgt_lang, tgt_file)):
            os.symlink(os.path.abspath(path), f"{prefix}.{lang}")
        return binarize(dest, src_lang, tgt_lang, prefix, srcdict=dicts[0], tgtdict=dicts[1], copy_from=data,
                        extra_files={"train.ids": ids_file} if ids_file else None)

"""The CTranslate2 model directory: what ``seqkd-export`` writes for a fairseq Transformer, ``seqkd-translate`` reads.

    DIR/manifest.json              ours: format name and version, kind, architecture, languages, length limits,
                                   quantisation, CTranslate2's version, and the sha256 of every other file
    DIR/model.bin, DIR/config.json CTranslate2's converted model (weights in float32, or int8 with --quantize int8)
    DIR/source_vocabulary.json     CTranslate2's vocabularies: fairseq's dictionaries, one symbol per id
    DIR/target_vocabulary.json     (fairseq's <pad> named <blank>)
    DIR/source.spm.model           (optional) the SentencePiece model that splits raw source text into subwords

Reading needs ``ctranslate2`` (and ``sentencepiece`` for a directory with a SentencePiece model), neither torch
nor fairseq: this module imports neither. A directory is published as the LSTM one is
(:func:`fairseq_seqkd.textio.atomic_dir`: a temporary sibling renamed into place at the end, the manifest
written last), so a directory that exists is complete; :func:`load` checks every file against the
manifest's sha256, so a vocabulary or SentencePiece model swapped for another is refused.
"""

import json
import os
import shutil
from typing import NamedTuple, Optional

from fairseq_seqkd.deploy.common import MANIFEST, new_folder, read_manifest
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_dir, file_sha256

FORMAT = "fairseq-seqkd-ctranslate2"
VERSION = 1
KIND = "ctranslate2"
MODEL = "model.bin"
SPM = "source.spm.model"
#: of the manifest: what :func:`load` reads besides ``files``
REQUIRED = ("source_lang", "target_lang", "max_source_positions", "max_target_positions", "quantize")


class CT2Bundle(NamedTuple):
    """A CTranslate2 model directory, checked: its folder, manifest and SentencePiece model path (or None)."""

    folder: str
    manifest: dict
    spm_path: Optional[str]


def save(folder, convert_into, manifest, spm_model=None):
    """Write a CTranslate2 model directory to ``folder`` atomically; return its real path.

    ``convert_into(path)`` writes CTranslate2's converted model into the new folder ``path``; ``manifest`` is
    completed with the format, the kind, the SentencePiece model's name and the sha256 of every file.
    ``folder`` must be absent, an empty directory or an earlier export (replaced whole).
    """
    folder = new_folder(folder)
    with atomic_dir(folder) as tmp:
        converted = os.path.join(tmp, "converted")
        convert_into(converted)
        for name in sorted(os.listdir(converted)):
            if not os.path.isfile(os.path.join(converted, name)):
                raise SeqKDError(f"CTranslate2's converter wrote a folder {name!r}: not a file this export knows")
            os.replace(os.path.join(converted, name), os.path.join(tmp, name))
        os.rmdir(converted)
        if spm_model:
            shutil.copyfile(spm_model, os.path.join(tmp, SPM))
        if not os.path.isfile(os.path.join(tmp, MODEL)):
            raise SeqKDError(f"CTranslate2's converter wrote no {MODEL}")
        files = {name: file_sha256(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))}
        manifest = dict(manifest, format=FORMAT, version=VERSION, kind=KIND, spm=SPM if spm_model else None,
                        files=files)
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:  # last: a manifest means the rest is there
            json.dump(manifest, f, ensure_ascii=False, indent=1)
            f.write("\n")
        new_folder(folder)  # still unused: atomic_dir replaces what is there
    return folder


def load(folder) -> CT2Bundle:
    """Read and check a directory written by :func:`save`; SeqKDError (one line) names what is missing or wrong:
    a foreign or damaged manifest, a missing file, a file whose sha256 is not the manifest's."""
    manifest = read_manifest(folder)
    path = os.path.join(folder, MANIFEST)
    if manifest.get("format") != FORMAT:
        raise SeqKDError(f"{path}: not a CTranslate2 model directory written by seqkd-export")
    if manifest.get("version") != VERSION:
        raise SeqKDError(f"{path}: format version {manifest.get('version')}; this seqkd-translate reads "
                         f"version {VERSION}")
    files = manifest.get("files")
    missing = [key for key in REQUIRED if key not in manifest]
    if (missing or not isinstance(files, dict) or MODEL not in files
            or not all(isinstance(k, str) and os.path.basename(k) == k and k not in ("", ".", "..")
                       and isinstance(v, str) for k, v in files.items())
            or (manifest.get("spm") is not None and manifest["spm"] not in files)):
        raise SeqKDError(f"{path}: damaged (its list of files or {', '.join(missing) or 'fields'} not as "
                         f"seqkd-export writes them)")
    for name, sha256 in files.items():
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            raise SeqKDError(f"{file}: no such file (the manifest lists it)")
        if file_sha256(file) != sha256:
            raise SeqKDError(f"{file}: not the file this directory was exported with (its sha256 differs from "
                             f"the manifest's): export the model again")
    spm = manifest.get("spm")
    return CT2Bundle(folder, manifest, os.path.join(folder, spm) if spm else None)


"""The exported model directory: what ``seqkd-export`` writes and ``seqkd-translate`` reads.

    DIR/manifest.json       format name and version, the network's hyper-parameters, languages,
                            length limits, quantisation, the files below
    DIR/weights.pt          the network's tensors (a plain state dict: ``torch.load(weights_only=True)``)
    DIR/source_vocab.json   the source dictionary: one symbol per id (fairseq's <s> <pad> </s> <unk> first)
    DIR/target_vocab.json   the target dictionary
    DIR/source.spm.model    (optional) the SentencePiece model that splits raw source text into subwords

Reading needs torch only (and sentencepiece for a directory with a SentencePiece model). The
directory is published with :func:`fairseq_seqkd.textio.atomic_dir` (a temporary sibling renamed
into place at the end), so a directory that exists is complete.
"""

import json
import os
import shutil

import torch

from fairseq_seqkd.deploy.common import new_folder, read_json as _read_json
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_dir

FORMAT = "fairseq-seqkd-student"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.pt"
VOCABS = {"source": "source_vocab.json", "target": "target_vocab.json"}
SPM = "source.spm.model"


class Vocabulary:
    """A fairseq dictionary as a list of symbols: ``index`` maps a word to its id (<unk> if unknown)."""

    def __init__(self, symbols, bos, pad, eos, unk):
        self.symbols = list(symbols)
        self.bos, self.pad, self.eos, self.unk = bos, pad, eos, unk
        self.indices = {s: i for i, s in enumerate(self.symbols)}

    def __len__(self):
        return len(self.symbols)

    def to_json(self):
        return {"symbols": self.symbols, "bos": self.bos, "pad": self.pad, "eos": self.eos, "unk": self.unk}

    @classmethod
    def from_json(cls, data):
        return cls(data["symbols"], data["bos"], data["pad"], data["eos"], data["unk"])

    def encode(self, words):
        """Ids of ``words`` followed by </s>, as fairseq's ``Dictionary.encode_line``."""
        get, unk = self.indices.get, self.unk
        return [get(w, unk) for w in words] + [self.eos]

    def decode(self, ids):
        """Words of ``ids`` without <s> and </s>, as fairseq's ``Dictionary.string``."""
        skip = (self.bos, self.eos)
        return [self.symbols[i] for i in ids if i not in skip]


class Bundle:
    """An exported student in memory: manifest, weights, vocabularies and the SentencePiece model path."""

    def __init__(self, manifest, weights, source_vocab, target_vocab, spm_path=None):
        self.manifest = manifest
        self.weights = weights
        self.source_vocab = source_vocab
        self.target_vocab = target_vocab
        self.spm_path = spm_path

    @property
    def model_config(self):
        return self.manifest["model"]


def save(folder, manifest, weights, source_vocab, target_vocab, spm_model=None):
    """Write a bundle to ``folder`` atomically (:func:`~fairseq_seqkd.textio.atomic_dir`).

    ``folder`` must not exist, or be an empty directory (a link to one: the bundle goes where it points).
    """
    folder = new_folder(folder)
    manifest = dict(manifest, format=FORMAT, version=VERSION,
                    files={"weights": WEIGHTS, **{f"{k}_vocab": v for k, v in VOCABS.items()},
                           "spm": SPM if spm_model else None})
    with atomic_dir(folder) as tmp:
        torch.save(weights, os.path.join(tmp, WEIGHTS))
        for side, vocab in (("source", source_vocab), ("target", target_vocab)):
            _write_json(os.path.join(tmp, VOCABS[side]), vocab.to_json())
        if spm_model:
            shutil.copyfile(spm_model, os.path.join(tmp, SPM))
        _write_json(os.path.join(tmp, MANIFEST), manifest)  # last: a manifest means the rest is there
        new_folder(folder)  # still unused: atomic_dir replaces what is there
    return folder


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


def load(folder) -> Bundle:
    """Read a bundle written by :func:`save`; SeqKDError names what is missing or wrong."""
    if not os.path.isdir(folder):
        raise SeqKDError(f"{folder}: no such directory")
    path = os.path.join(folder, MANIFEST)
    manifest = _read_json(path, folder)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SeqKDError(f"{path}: not a model directory written by seqkd-export")
    if manifest.get("version") != VERSION:
        raise SeqKDError(f"{path}: format version {manifest.get('version')}; this seqkd-translate reads "
                         f"version {VERSION}")
    vocabs = {}
    for side, name in VOCABS.items():
        data = _read_json(os.path.join(folder, name), folder)
        try:
            vocabs[side] = Vocabulary.from_json(data)
        except (KeyError, TypeError):
            raise SeqKDError(f"{os.path.join(folder, name)}: not a vocabulary written by seqkd-export") from None
    weights_path = os.path.join(folder, WEIGHTS)
    if not os.path.isfile(weights_path):
        raise SeqKDError(f"{weights_path}: no such file")
    try:
        weights = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign file
        raise SeqKDError(f"{weights_path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:120]})") from None
    if not isinstance(weights, dict):
        raise SeqKDError(f"{weights_path}: not a state dict")
    spm_path = None
    if manifest["files"].get("spm"):
        spm_path = os.path.join(folder, manifest["files"]["spm"])
        if not os.path.isfile(spm_path):
            raise SeqKDError(f"{spm_path}: no such file (the manifest names a SentencePiece model)")
    return Bundle(manifest, weights, vocabs["source"], vocabs["target"], spm_path)

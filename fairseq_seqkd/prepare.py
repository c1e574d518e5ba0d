"""seqkd-prepare's library: parallel text -> fixed-seed split, SentencePiece subwords, fairseq binary data.

One corpus (split here with a fixed seed) or a corpus already split (separate valid and test files).
Writes::

    OUT/raw/{train,valid,test}.{SRC,TGT}    plain text (references for BLEU)
    OUT/raw/{valid,test}.ref1.TGT ...        extra references, same split
    OUT/spm/{SRC,TGT}.model                  one SentencePiece model per side
    OUT/spm/joint.model                      with --joint-vocab: the one model of both sides (SRC.model and
                                             TGT.model are then byte-identical copies of it)
    OUT/tok/{train,valid,test}.{SRC,TGT}     subword text (what fairseq sees)
    OUT/bin/                                 fairseq-preprocess output (the DATA argument); with
                                             --joint-vocab dict.SRC.txt and dict.TGT.txt are one
                                             dictionary of both sides (for --share-all-embeddings)
    OUT/{raw,tok}/mono.SRC, OUT/bin/mono.*   with --mono-src: source-only text, cleaned and deduplicated
                                             (fairseq_seqkd/mono.py), binarized with no target file
    OUT/prepare.json                         options and counts, written last

Preparing again with the same options does nothing; with other options it stops (SeqKDError) rather
than overwrite a corpus that models may have been trained on. An option added to seqkd-prepare since OUT
was prepared counts as having had its default value there.
"""

import dataclasses
import json
import logging
import os
import random
import shutil
import tempfile
import time
from typing import List, Optional

from fairseq_seqkd.binarize import binarize
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_write_lines, read_lines, refuse_broken_link

logger = logging.getLogger("seqkd-prepare")


@dataclasses.dataclass
class PrepareOptions:
    """What seqkd-prepare does (its command-line options, same names)."""

    src_file: str
    tgt_file: str
    src_lang: str
    tgt_lang: str
    out: str
    valid_src: Optional[str] = None
    valid_tgt: Optional[str] = None
    test_src: Optional[str] = None
    test_tgt: Optional[str] = None
    extra_ref: List[str] = dataclasses.field(default_factory=list)
    ids: Optional[str] = None
    valid_size: int = 1000
    test_size: int = 1000
    seed: int = 1
    max_words: int = 0
    train_size: int = 0
    vocab_size: int = 8000
    src_vocab_size: Optional[int] = None
    tgt_vocab_size: Optional[int] = None
    spm_model_type: str = "unigram"
    joint_vocab: bool = False
    mono_src: Optional[str] = None
    workers: int = 1


#: Each option's default (what a prepare.json written before the option existed implies).
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PrepareOptions) if f.default is not dataclasses.MISSING}

#: The SentencePiece model's name (OUT/spm/joint.model) with --joint-vocab.
JOINT = "joint"


def _check_aligned(files):
    """Read line-aligned files; stop with FILE: message if they differ in length."""
    texts = {path: read_lines(path) for path in files if path}
    counts = {path: len(lines) for path, lines in texts.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{path}: {n} lines" for path, n in counts.items())
        raise SeqKDError(f"files are not line-aligned ({detail})")
    return texts


def _split(args, texts):
    """Return {split: {stream: lines}} for streams src, tgt, refN, ids."""
    streams = {"src": texts[args.src_file], "tgt": texts[args.tgt_file]}
    for i, path in enumerate(args.extra_ref, 1):
        streams[f"ref{i}"] = texts[path]
    if args.ids:
        streams["ids"] = texts[args.ids]
    n = len(streams["src"])
    for i in range(n):
        if not streams["src"][i].strip() or not streams["tgt"][i].strip():
            raise SeqKDError(f"{args.src_file if not streams['src'][i].strip() else args.tgt_file}:"
                             f"{i + 1}: empty line (remove empty pairs before preparing)")
    keep = list(range(n))
    if args.max_words:
        keep = [i for i in keep if len(streams["src"][i].split()) <= args.max_words
                and len(streams["tgt"][i].split()) <= args.max_words]
    rng = random.Random(args.seed)
    if args.valid_src:
        order = {"train": keep}
    else:
        if args.valid_size + args.test_size >= len(keep):
            raise SeqKDError(f"--valid-size {args.valid_size} + --test-size {args.test_size} leave no "
                             f"training data out of {len(keep)} pairs")
        shuffled = keep[:]
        rng.shuffle(shuffled)
        held = args.valid_size + args.test_size
        # held-out sets keep corpus order, which makes them easier to read
        order = {"valid": sorted(shuffled[:args.valid_size]),
                 "test": sorted(shuffled[args.valid_size:held]),
                 "train": sorted(shuffled[held:])}
    if args.train_size and len(order["train"]) > args.train_size:
        order["train"] = sorted(rng.sample(order["train"], args.train_size))
    out = {split: {name: [lines[i] for i in idx] for name, lines in streams.items()}
           for split, idx in order.items()}
    if args.valid_src:
        for split in ("valid", "test"):
            src, tgt = getattr(args, f"{split}_src"), getattr(args, f"{split}_tgt")
            texts2 = _check_aligned([src, tgt])
            out[split] = {"src": texts2[src], "tgt": texts2[tgt]}
    return out


def _train_spm(text_paths, prefix, vocab_size, model_type, threads):
    """Train PREFIX.model (and PREFIX.vocab) on the text files ``text_paths`` together."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=list(text_paths), model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, hard_vocab_limit=False, num_threads=threads,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, minloglevel=2,
    )


def _joint_dictionary(text_paths, path, workers):
    """One fairseq dictionary of the subword files ``text_paths`` together, saved as ``path``: what
    fairseq-preprocess --joined-dictionary builds (its defaults: every symbol, padded to a multiple of 8)."""
    from fairseq.tasks.translation import TranslationTask

    TranslationTask.build_dictionary(text_paths, workers=workers, threshold=0, nwords=-1,
                                     padding_factor=8).save(path)
    return path


def prepare(args: PrepareOptions):
    """Prepare the corpus (see the module docstring); returns what prepare.json holds."""
    out = args.out
    refuse_broken_link(out, f"--out {out}")
    if args.joint_vocab and (args.src_vocab_size or args.tgt_vocab_size):
        flag = "--src-vocab-size" if args.src_vocab_size else "--tgt-vocab-size"
        raise SeqKDError(f"--joint-vocab has one vocabulary for both sides: give its size with --vocab-size, "
                         f"not {flag}")
    config = {k: v for k, v in dataclasses.asdict(args).items() if k != "workers"}
    stamp = os.path.join(out, "prepare.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            done = json.load(f)
        recorded = {**{k: v for k, v in _DEFAULTS.items() if k in config}, **done.get("config", {})}
        if recorded != config:
            changed = sorted(k for k in set(config) | set(recorded) if config.get(k) != recorded.get(k))
            raise SeqKDError(f"{out} was prepared with other options ({', '.join(changed)}); "
                             f"use another --out or remove it")
        logger.info("%s is already prepared (%s): nothing to do", out, stamp)
        return done
    start = time.time()
    files = [args.src_file, args.tgt_file, *args.extra_ref, args.ids]
    others = (args.valid_src, args.valid_tgt, args.test_src, args.test_tgt, args.mono_src)
    for path in [p for p in files if p] + [p for p in others if p]:
        if not os.path.isfile(path):
            raise SeqKDError(f"{path}: no such file")
    if bool(args.valid_src) != bool(args.test_src) or bool(args.valid_src) != bool(args.valid_tgt) \
            or bool(args.test_src) != bool(args.test_tgt):
        raise SeqKDError("give all of --valid-src --valid-tgt --test-src --test-tgt, or none")
    texts = _check_aligned(files)
    splits = _split(args, texts)
    if args.mono_src:  # a bad file stops us before anything is written
        from fairseq_seqkd import mono

        mono_codes = mono.check_mono(args.mono_src, [line for streams in splits.values() for line in streams["src"]],
                                     args.max_words)
    raw, spm_dir, tok, bin_dir = (os.path.join(out, d) for d in ("raw", "spm", "tok", "bin"))
    for d in (raw, spm_dir, tok):
        os.makedirs(d, exist_ok=True)
    lang = {"src": args.src_lang, "tgt": args.tgt_lang}
    for split, streams in splits.items():
        for name, lines in streams.items():
            if name in lang:
                fname = f"{split}.{lang[name]}"
            elif name == "ids":
                fname = f"{split}.ids"
            elif split == "train":
                continue  # extra references matter for evaluation only
            else:
                fname = f"{split}.{name}.{args.tgt_lang}"
            atomic_write_lines(os.path.join(raw, fname), lines)
    counts = {split: len(streams["src"]) for split, streams in splits.items()}
    logger.info("split: %s", ", ".join(f"{k} {v} pairs" for k, v in counts.items()))

    import sentencepiece as spm

    vocab = {"src": args.src_vocab_size or args.vocab_size, "tgt": args.tgt_vocab_size or args.vocab_size}
    if args.joint_vocab:
        # one model of both sides' training text, copied as SRC.model and TGT.model for every reader of those
        t0 = time.time()
        prefix = os.path.join(spm_dir, JOINT)
        _train_spm([os.path.join(raw, f"train.{lang[side]}") for side in ("src", "tgt")], prefix, args.vocab_size,
                   args.spm_model_type, args.workers)
        for side in ("src", "tgt"):
            for ext in (".model", ".vocab"):
                copy = os.path.join(spm_dir, lang[side] + ext)
                if copy != prefix + ext:
                    shutil.copyfile(prefix + ext, copy)
        logger.info("sentencepiece %s (%s and %s): trained in %.1fs", JOINT, args.src_lang, args.tgt_lang,
                    time.time() - t0)
    for side in ("src", "tgt"):
        t0 = time.time()
        prefix = os.path.join(spm_dir, lang[side])
        if not args.joint_vocab:
            _train_spm([os.path.join(raw, f"train.{lang[side]}")], prefix, vocab[side], args.spm_model_type,
                       args.workers)
        model = spm.SentencePieceProcessor(model_file=prefix + ".model")
        for split, streams in splits.items():
            pieces = model.encode(streams[side], out_type=str)
            atomic_write_lines(os.path.join(tok, f"{split}.{lang[side]}"), [" ".join(p) for p in pieces])
        logger.info("sentencepiece %s: %d pieces (%.1fs)", lang[side], model.get_piece_size(), time.time() - t0)

    t0 = time.time()
    # the joint dictionary's file is a scratch copy outside OUT (fairseq-preprocess saves it as bin/dict.*.txt)
    with tempfile.TemporaryDirectory(prefix="seqkd-prepare-") as scratch:
        dicts = {}
        if args.joint_vocab:
            dicts["srcdict"] = dicts["tgtdict"] = _joint_dictionary(
                [os.path.join(tok, f"train.{lang[side]}") for side in ("src", "tgt")],
                os.path.join(scratch, "dict.txt"), args.workers)
        # replaces a leftover of an interrupted run (prepare.json was never written)
        binarize(bin_dir, args.src_lang, args.tgt_lang, os.path.join(tok, "train"), os.path.join(tok, "valid"),
                 os.path.join(tok, "test"), workers=args.workers, **dicts)
    logger.info("binarized into %s (%.1fs)", bin_dir, time.time() - t0)
    done = {"config": config, "pairs": counts, "data": bin_dir, "seconds": round(time.time() - start, 1)}
    if args.mono_src:
        done["mono"] = mono.write_mono(
            args.mono_src, mono_codes, os.path.join(raw, f"{mono.MONO}.{args.src_lang}"),
            os.path.join(spm_dir, f"{args.src_lang}.model"), os.path.join(tok, f"{mono.MONO}.{args.src_lang}"),
            bin_dir, args.src_lang, args.tgt_lang, args.workers)
    atomic_write_lines(stamp, [json.dumps(done, indent=2)])
    logger.info("prepared %s in %.1fs", out, time.time() - start)
    return done

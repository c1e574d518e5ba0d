"""seqkd-prepare: parallel text -> split, SentencePiece subwords, fairseq binary data.

One corpus (``--src-file``/``--tgt-file``, split here with a fixed seed) or a
corpus already split (add ``--valid-*`` and ``--test-*`` files). Writes::

    OUT/raw/{train,valid,test}.{SRC,TGT}    plain text (references for BLEU)
    OUT/raw/{valid,test}.ref1.TGT ...        extra references (--extra-ref), same split
    OUT/spm/{SRC,TGT}.model                  one SentencePiece model per side
    OUT/tok/{train,valid,test}.{SRC,TGT}     subword text (what fairseq sees)
    OUT/bin/                                 fairseq-preprocess output (the DATA argument)
    OUT/prepare.json                         options and counts, written last

Rerunning with the same options does nothing; with other options it stops
rather than overwrite a corpus that models may have been trained on.
"""

import argparse
import json
import logging
import os
import random
import shutil
import time

from fairseq_seqkd.cli import setup_logging
from fairseq_seqkd.textio import atomic_write_lines, fail, read_lines

logger = logging.getLogger("seqkd-prepare")


def get_parser():
    p = argparse.ArgumentParser(prog="seqkd-prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--src-file", required=True, help="source side, one sentence per line (train, or the whole corpus)")
    p.add_argument("--tgt-file", required=True, help="target side, line-aligned with --src-file")
    p.add_argument("--src-lang", required=True, help="source language code used in file names, e.g. es")
    p.add_argument("--tgt-lang", required=True, help="target language code used in file names, e.g. en")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--valid-src", help="a separate validation source file (then the corpus is not split)")
    p.add_argument("--valid-tgt", help="a separate validation target file")
    p.add_argument("--test-src", help="a separate test source file")
    p.add_argument("--test-tgt", help="a separate test target file")
    p.add_argument("--extra-ref", action="append", default=[],
                   help="another reference translation, line-aligned with --tgt-file (repeatable); "
                        "kept for the valid and test splits as raw/{valid,test}.refN.TGT")
    p.add_argument("--ids", help="an id per line of --src-file (e.g. verse references), split alongside")
    p.add_argument("--valid-size", type=int, default=1000, help="sentences held out for validation")
    p.add_argument("--test-size", type=int, default=1000, help="sentences held out for test")
    p.add_argument("--seed", type=int, default=1, help="seed of the split and of --train-size sampling")
    p.add_argument("--max-words", type=int, default=0,
                   help="keep only pairs with at most this many words on both sides (0: all), before splitting")
    p.add_argument("--train-size", type=int, default=0, help="keep at most this many training pairs (0: all)")
    p.add_argument("--vocab-size", type=int, default=8000, help="SentencePiece vocabulary size of each side")
    p.add_argument("--src-vocab-size", type=int, help="source vocabulary size (default: --vocab-size)")
    p.add_argument("--tgt-vocab-size", type=int, help="target vocabulary size (default: --vocab-size)")
    p.add_argument("--spm-model-type", default="unigram", choices=["unigram", "bpe", "char", "word"],
                   help="SentencePiece model type")
    p.add_argument("--workers", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="processes for SentencePiece and fairseq-preprocess")
    return p


def _check_aligned(files):
    """Read line-aligned files; stop with FILE: message if they differ in length."""
    texts = {path: read_lines(path) for path in files if path}
    counts = {path: len(lines) for path, lines in texts.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{path}: {n} lines" for path, n in counts.items())
        fail(f"files are not line-aligned ({detail})")
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
            fail(f"{args.src_file if not streams['src'][i].strip() else args.tgt_file}:"
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
            fail(f"--valid-size {args.valid_size} + --test-size {args.test_size} leave no "
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


def _train_spm(text_path, prefix, vocab_size, model_type, threads):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=text_path, model_prefix=prefix, vocab_size=vocab_size, model_type=model_type,
        character_coverage=1.0, hard_vocab_limit=False, num_threads=threads,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, minloglevel=2,
    )


def _binarize(args, tok, bin_dir):
    from fairseq import options
    from fairseq_cli import preprocess

    parser = options.get_preprocessing_parser()
    pargs = parser.parse_args([
        "--source-lang", args.src_lang, "--target-lang", args.tgt_lang,
        "--trainpref", os.path.join(tok, "train"), "--validpref", os.path.join(tok, "valid"),
        "--testpref", os.path.join(tok, "test"), "--destdir", bin_dir, "--workers", str(args.workers),
    ])
    preprocess.main(pargs)


def prepare(args):
    out = args.out
    config = {k: v for k, v in vars(args).items() if k != "workers"}
    stamp = os.path.join(out, "prepare.json")
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            done = json.load(f)
        if done.get("config") != config:
            changed = sorted(k for k in set(config) | set(done.get("config", {}))
                             if config.get(k) != done.get("config", {}).get(k))
            fail(f"{out} was prepared with other options ({', '.join(changed)}); "
                             f"use another --out or remove it")
        logger.info("%s is already prepared (%s): nothing to do", out, stamp)
        return done
    start = time.time()
    files = [args.src_file, args.tgt_file, *args.extra_ref, args.ids]
    for path in [p for p in files if p] + [p for p in (args.valid_src, args.valid_tgt, args.test_src, args.test_tgt) if p]:
        if not os.path.isfile(path):
            fail(f"{path}: no such file")
    if bool(args.valid_src) != bool(args.test_src) or bool(args.valid_src) != bool(args.valid_tgt) \
            or bool(args.test_src) != bool(args.test_tgt):
        raise SystemExit("error: give all of --valid-src --valid-tgt --test-src --test-tgt, or none")
    texts = _check_aligned(files)
    splits = _split(args, texts)
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
    for side in ("src", "tgt"):
        t0 = time.time()
        prefix = os.path.join(spm_dir, lang[side])
        _train_spm(os.path.join(raw, f"train.{lang[side]}"), prefix, vocab[side], args.spm_model_type, args.workers)
        model = spm.SentencePieceProcessor(model_file=prefix + ".model")
        for split, streams in splits.items():
            pieces = model.encode(streams[side], out_type=str)
            atomic_write_lines(os.path.join(tok, f"{split}.{lang[side]}"), [" ".join(p) for p in pieces])
        logger.info("sentencepiece %s: %d pieces (%.1fs)", lang[side], model.get_piece_size(), time.time() - t0)

    t0 = time.time()
    if os.path.isdir(bin_dir):
        shutil.rmtree(bin_dir)  # a leftover of an interrupted run: prepare.json was never written
    _binarize(args, tok, bin_dir)
    logger.info("binarized into %s (%.1fs)", bin_dir, time.time() - t0)
    done = {"config": config, "pairs": counts, "data": bin_dir, "seconds": round(time.time() - start, 1)}
    atomic_write_lines(stamp, [json.dumps(done, indent=2)])
    logger.info("prepared %s in %.1fs", out, time.time() - start)
    return done


def cli_main(argv=None):
    setup_logging()
    args = get_parser().parse_args(argv)
    prepare(args)


if __name__ == "__main__":
    cli_main()

"""Plain parallel text from the paper's corpora as distributed (IWSLT15 from WIT3, WMT14 from statmt.org).

    python -m fairseq_seqkd.corpora.paper iwslt15 --corpus-dir th-en --src th --tgt en --out DIR
    python -m fairseq_seqkd.corpora.paper wmt14 --corpus-dir wmt14 --src en --tgt de --out DIR

Writes DIR/{train,valid,test}.{SRC,TGT}, one sentence per line, line-aligned:

* IWSLT15 (https://wit3.fbk.eu/2015-01, texts/th/en/th-en.tgz): training from
  ``train.tags.th-en.*`` (talk metadata lines, which start with '<', are
  dropped); valid = dev2010, tst2010, tst2011; test = tst2012, tst2013, from
  ``IWSLT15.TED.<set>.th-en.<lang>.xml`` (the <seg> elements).
* WMT14 (https://www.statmt.org/wmt14/translation-task.html): training =
  europarl-v7 + commoncrawl + news-commentary-v9 (``*.de-en.{de,en}``); valid =
  newstest2012 + newstest2013 (``dev/``); test = newstest2014 (``test-full/``
  SGML, the official ``-src``/``-ref`` files).

Pairs with an empty side are dropped from the training data and counted.
"""

import argparse
import html
import logging
import os
import re

from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.textio import atomic_write_lines, read_lines

logger = logging.getLogger("fairseq_seqkd.corpora.paper")
_SEG = re.compile(r"<seg[^>]*>(.*?)</seg>", re.IGNORECASE | re.DOTALL)


def segments(path):
    """The text of every <seg> element of an XML/SGML file, in order."""
    with open(path, encoding="utf-8") as f:
        found = [html.unescape(m.group(1)).strip() for m in _SEG.finditer(f.read())]
    if not found:
        raise SeqKDError(f"{path}: no <seg> elements")
    return found


def need(path):
    if not os.path.isfile(path):
        raise SeqKDError(f"{path}: no such file (docs/recipes.md says where to get it)")
    return path


def aligned(src, tgt, what):
    if len(src) != len(tgt):
        raise SeqKDError(f"{what}: {len(src)} source and {len(tgt)} target lines")
    keep = [(s, t) for s, t in zip(src, tgt) if s.strip() and t.strip()]
    if len(keep) != len(src):
        logger.info("%s: dropped %d pairs with an empty side", what, len(src) - len(keep))
    return [s for s, _ in keep], [t for _, t in keep]


def iwslt15(corpus, src, tgt):
    pair = f"{src}-{tgt}" if os.path.exists(os.path.join(corpus, f"train.tags.{src}-{tgt}.{src}")) else f"{tgt}-{src}"
    train = {}
    for lang in (src, tgt):
        lines = read_lines(need(os.path.join(corpus, f"train.tags.{pair}.{lang}")))
        train[lang] = [line.strip() for line in lines if not line.lstrip().startswith("<")]
    splits = {"train": aligned(train[src], train[tgt], f"{corpus} train")}
    for split, sets in (("valid", ("dev2010", "tst2010", "tst2011")), ("test", ("tst2012", "tst2013"))):
        s_all, t_all = [], []
        for name in sets:
            s = segments(need(os.path.join(corpus, f"IWSLT15.TED.{name}.{pair}.{src}.xml")))
            t = segments(need(os.path.join(corpus, f"IWSLT15.TED.{name}.{pair}.{tgt}.xml")))
            if len(s) != len(t):
                raise SeqKDError(f"IWSLT15.TED.{name}: {len(s)} source and {len(t)} target segments")
            s_all += s
            t_all += t
        splits[split] = (s_all, t_all)
    return splits


def find(corpus, name):
    """``name`` in the corpus folder or its training/ folder (where some statmt.org archives unpack)."""
    for folder in (corpus, os.path.join(corpus, "training")):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return need(os.path.join(corpus, name))


def wmt14(corpus, src, tgt):
    train_s, train_t = [], []
    for name in ("europarl-v7", "commoncrawl", "news-commentary-v9"):
        s = read_lines(find(corpus, f"{name}.de-en.{src}"))
        t = read_lines(find(corpus, f"{name}.de-en.{tgt}"))
        s, t = aligned(s, t, name)
        train_s += s
        train_t += t
    valid_s, valid_t = [], []
    for name in ("newstest2012", "newstest2013"):
        s, t = aligned(read_lines(need(os.path.join(corpus, "dev", f"{name}.{src}"))),
                       read_lines(need(os.path.join(corpus, "dev", f"{name}.{tgt}"))), name)
        valid_s += s
        valid_t += t
    pair = "deen" if {src, tgt} == {"de", "en"} else f"{src}{tgt}"
    test_s = segments(need(os.path.join(corpus, "test-full", f"newstest2014-{pair}-src.{src}.sgm")))
    test_t = segments(need(os.path.join(corpus, "test-full", f"newstest2014-{pair}-ref.{tgt}.sgm")))
    if len(test_s) != len(test_t):
        raise SeqKDError(f"newstest2014: {len(test_s)} source and {len(test_t)} reference segments")
    return {"train": (train_s, train_t), "valid": (valid_s, valid_t), "test": (test_s, test_t)}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("corpus", choices=("iwslt15", "wmt14"))
    p.add_argument("--corpus-dir", required=True, help="the unpacked distribution (see above)")
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--out", required=True)
    return p


def write_corpus(corpus, corpus_dir, src, tgt, out):
    """Read the corpus and write OUT/{train,valid,test}.{SRC,TGT}."""
    splits = (iwslt15 if corpus == "iwslt15" else wmt14)(corpus_dir, src, tgt)
    for split, (s, t) in splits.items():
        atomic_write_lines(os.path.join(out, f"{split}.{src}"), s)
        atomic_write_lines(os.path.join(out, f"{split}.{tgt}"), t)
        logger.info("%s: %d pairs", split, len(s))
    return splits


def main(argv=None):
    from fairseq_seqkd.cli import run_script

    def _main(argv):
        args = get_parser().parse_args(argv)
        return write_corpus(args.corpus, args.corpus_dir, args.src, args.tgt, args.out)

    return run_script(_main, argv)


if __name__ == "__main__":
    main()

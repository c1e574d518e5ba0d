"""Verse-aligned Bible texts from SWORD modules: the embedded default corpus.

Spanish Reina-Valera 1909 (``spaRV1909eb``), the World English Bible
(``engWEB2015eb``) and the King James Version (``engKJV2006eb``) are public
domain and ship as Debian packages (``sword-text-sparv``, ``sword-text-web``,
``sword-text-kjv``). We read them with pysword, chapter by chapter, and keep
the verses that all modules have, in canonical order.

Systematic noise we clean (and count):

* footnotes: pysword drops ``<note>`` elements, and where a note sat between
  two words they were glued together ("Godcreated"); we put a space there;
* chapter openings in capitals in RV1909 ("EN el principio"): the capitalised
  first word is written as an ordinary word ("En el principio");
* whitespace runs and spaces before punctuation left by stripped markup;
* back matter after a book's end marker, which a module returns as part of the
  book's last verse (the WEB's 3,000-word glossary after Revelation 22:21).

Chapters whose verse count differs between the modules' versifications are
skipped (3 John 1 and Revelation 12: 31 verses), because their verses do not
correspond one to one.
"""

import argparse
import collections
import functools
import logging
import os
import re
import sys

from fairseq_seqkd.errors import SeqKDError, exit_on_error
from fairseq_seqkd.textio import atomic_write_lines

logger = logging.getLogger("fairseq_seqkd.corpora.bible")

SWORD_PATH = "/usr/share/sword"
MODULES = {"es": "spaRV1909eb", "en": "engWEB2015eb", "kjv": "engKJV2006eb"}
DEBIAN_PACKAGES = "sword-text-sparv sword-text-web sword-text-kjv"

_NOTE = re.compile(r"<note\b.*?</note>", re.DOTALL | re.IGNORECASE)
_NOTE_MARK = "\x00"
_GLUED_NOTE = re.compile(r"(?<=\w)\x00(?=\w)")
_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_CAPS_FIRST_WORD = re.compile(r"^(\W*)([^\W\d_]{2,})\b")
_AFTER_BOOK_END = re.compile(r'<div\b(?=[^>]*\beID=)(?=[^>]*\btype="book")[^>]*/>.*', re.DOTALL)


class CleaningStats(collections.Counter):
    """How often each cleaning rule fired (reported by ``prepare.sh``)."""


def clean_verse(raw: str, cleaner, first_of_chapter: bool = False, stats=None) -> str:
    """Turn one verse of OSIS markup into plain text (see the module docstring)."""
    stats = stats if stats is not None else CleaningStats()
    raw, back_matter = _AFTER_BOOK_END.subn("", raw)
    stats["back_matter_after_book_end"] += back_matter
    text = _NOTE.sub(_NOTE_MARK, raw)
    text = cleaner.clean(text)
    text, glued = _GLUED_NOTE.subn(" ", text)
    stats["note_between_words"] += glued
    text = text.replace(_NOTE_MARK, "")
    text = _SPACE.sub(" ", text).strip()
    text, moved = _SPACE_BEFORE_PUNCT.subn(r"\1", text)
    stats["space_before_punctuation"] += moved
    if first_of_chapter:
        match = _CAPS_FIRST_WORD.match(text)
        if match and match.group(2).isupper():
            word = match.group(2)
            text = match.group(1) + word[0] + word[1:].lower() + text[match.end():]
            stats["capitalised_chapter_opening"] += 1
    return text


def _open_modules(sword_path: str):
    try:
        from pysword.modules import SwordModules
    except ImportError:
        raise SeqKDError("pysword is not installed: pip install pysword") from None
    if not os.path.isdir(os.path.join(sword_path, "mods.d")):
        raise SeqKDError(
            f"no SWORD modules in {sword_path}: install them with "
            f"'apt-get install {DEBIAN_PACKAGES}' (Debian/Ubuntu), or download the modules "
            f"{', '.join(MODULES.values())} from crosswire.org and unpack them into {sword_path}"
        )
    modules = SwordModules(sword_path)
    found = modules.parse_modules()
    missing = [name for name in MODULES.values() if name not in found]
    if missing:
        raise SeqKDError(
            f"SWORD module(s) {', '.join(missing)} not found in {sword_path}: "
            f"install them with 'apt-get install {DEBIAN_PACKAGES}'"
        )
    bibles = {}
    for key, name in MODULES.items():
        bible = modules.get_bible_from_module(name)
        # pysword decompresses a whole block for every verse it returns; keeping
        # the last few blocks makes reading the Bible take seconds, not minutes.
        if hasattr(bible, "_decompressed_text"):
            bible._decompressed_text = functools.lru_cache(maxsize=8)(bible._decompressed_text)
        bibles[key] = bible
    return bibles


def _books(bible):
    structure = bible.get_structure().get_books()
    return {book.osis_name: book for testament in ("ot", "nt") for book in structure.get(testament, [])}


def read_bible(sword_path: str = SWORD_PATH):
    """Return ``(refs, texts, stats)``: verse references and, per key of MODULES, the cleaned verses.

    Only verses present and non-empty in every module are kept.
    """
    from pysword.cleaner import OSISCleaner

    cleaner = OSISCleaner()
    bibles = _open_modules(sword_path)
    books = {key: _books(bible) for key, bible in bibles.items()}
    order = list(books["kjv"])
    common = [b for b in order if all(b in books[k] for k in books)]
    refs, texts, stats = [], {k: [] for k in bibles}, CleaningStats()
    for book in common:
        num_chapters = books["kjv"][book].num_chapters
        for chapter in range(1, num_chapters + 1):
            lengths = {k: books[k][book].chapter_lengths[chapter - 1] for k in books}
            if len(set(lengths.values())) != 1:
                stats["verses_in_chapters_with_different_versification"] += lengths["kjv"]
                continue
            verses = list(range(1, lengths["kjv"] + 1))
            chapter_text = {}
            for key, bible in bibles.items():
                raw = list(bible.get_iter(books=[book], chapters=[chapter], verses=verses, clean=False))
                if len(raw) != len(verses):  # a verse the module lacks: look them up one by one
                    raw = [
                        next(iter(bible.get_iter(books=[book], chapters=[chapter], verses=[v], clean=False)), "")
                        for v in verses
                    ]
                chapter_text[key] = [
                    clean_verse(r, cleaner, first_of_chapter=(v == 1), stats=stats) for v, r in zip(verses, raw)
                ]
            for i, verse in enumerate(verses):
                row = {k: chapter_text[k][i] for k in bibles}
                if not all(row.values()):
                    stats["verses_empty_in_some_module"] += 1
                    continue
                refs.append(f"{book}.{chapter}.{verse}")
                for k in bibles:
                    texts[k].append(row[k])
    return refs, texts, stats


def make_out_dir(path):
    """Create the output folder ``path``; SeqKDError names it (or the broken link above it) if that fails."""
    from fairseq_seqkd.textio import refuse_broken_link

    refuse_broken_link(path, f"--out-dir {path}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise SeqKDError(f"--out-dir {path}: cannot create it ({e.strerror})") from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", required=True, help="where to write bible.{es,en,kjv,ref}")
    parser.add_argument("--sword-path", default=SWORD_PATH, help="folder holding mods.d/ and modules/")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s | %(message)s", level=logging.INFO, stream=sys.stdout,
                        force=True)  # fairseq configures logging when imported
    with exit_on_error():
        make_out_dir(args.out_dir)
        refs, texts, stats = read_bible(args.sword_path)
    for key in MODULES:
        atomic_write_lines(os.path.join(args.out_dir, f"bible.{key}"), texts[key])
    atomic_write_lines(os.path.join(args.out_dir, "bible.ref"), refs)
    logger.info("read %d verse triples (es/en/kjv) from %s", len(refs), args.sword_path)
    for rule, count in sorted(stats.items()):
        logger.info("cleaning: %s: %d", rule.replace("_", " "), count)


if __name__ == "__main__":
    main()

"""Console scripts (one module each); see setup.py for their names."""

import argparse
import logging
import sys


def setup_logging():
    """Progress messages on stdout; errors stay one line on stderr (via SystemExit)."""
    # force: importing fairseq has already configured the root logger
    logging.basicConfig(format="%(asctime)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stdout, force=True)


def argument_parser(prog, doc):
    """An ``ArgumentParser`` for a console script: its module docstring's first paragraph is the
    description, the rest (usage examples) the epilog, kept as written."""
    description, _, epilog = doc.partition("\n\n")
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)

"""Console scripts (one module each); see setup.py for their names.

Each script is a page of argument parsing and one call into a library module; :func:`run_script` gives
them the same logging and the same error policy (a library :class:`~fairseq_seqkd.errors.SeqKDError`
becomes ``error: ...`` on stderr and exit status 1, never a traceback).
"""

import argparse
import logging
import sys

from fairseq_seqkd.errors import exit_on_error


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


def run_script(main, argv=None):
    """Run a script's ``main(argv)`` with logging set up and library errors turned into one line."""
    setup_logging()
    with exit_on_error():
        return main(argv)

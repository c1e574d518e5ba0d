"""Console scripts (one module each); see setup.py for their names."""

import logging
import sys


def setup_logging():
    """Progress messages on stdout; errors stay one line on stderr (via SystemExit)."""
    # force: importing fairseq has already configured the root logger
    logging.basicConfig(format="%(asctime)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stdout, force=True)

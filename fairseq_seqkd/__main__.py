"""``python -m fairseq_seqkd`` prints the path to give fairseq as ``--user-dir``."""

import os

# Computed without importing the package: printing a path should not load fairseq.
print(os.path.dirname(os.path.abspath(__file__)))

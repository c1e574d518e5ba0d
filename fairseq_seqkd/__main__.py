"""``python -m fairseq_seqkd`` prints the path to give fairseq as ``--user-dir``.

Python imports the package before it runs this module, so the plugin is loaded (and fairseq with it)
even though only a path is printed; ``fairseq_seqkd.USER_DIR`` is the same path.
"""

import os

print(os.path.dirname(os.path.abspath(__file__)))

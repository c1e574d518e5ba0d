"""fairseq-seqkd: sequence-level knowledge distillation (Kim & Rush, EMNLP 2016).

Load with ``--user-dir`` (the path of this folder). Importing the package
registers its models, criterions and tasks with fairseq and lets torch >= 2.6
load fairseq checkpoints safely (see :mod:`fairseq_seqkd.compat`). Without fairseq installed,
only :mod:`fairseq_seqkd.deploy`'s runtime (seqkd-translate) works; without torch either, only
its CTranslate2 runtime.
"""

import os

try:  # without torch only the CTranslate2 runtime is usable, and no checkpoint can be loaded anyway
    from . import compat
except ModuleNotFoundError as e:
    if e.name != "torch":  # torch is there but broken: say so
        raise
else:
    compat.allow_fairseq_checkpoints()

try:  # without fairseq only the deployment runtime (fairseq_seqkd.deploy, seqkd-translate) is usable
    import fairseq  # noqa: F401
except ModuleNotFoundError as e:
    if e.name != "fairseq":  # fairseq is there but broken: say so
        raise
else:
    from . import criterions, models, tasks  # noqa: E402,F401  (registration)

#: The value to pass as ``--user-dir`` to fairseq's command-line tools.
USER_DIR = os.path.dirname(os.path.abspath(__file__))

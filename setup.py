"""fairseq-seqkd: sequence-level knowledge distillation (Kim & Rush, 2016) as a fairseq plugin."""

from setuptools import find_packages, setup

setup(
    name="fairseq-seqkd",
    version="0.1.0",
    description="Sequence-level knowledge distillation (Kim & Rush, EMNLP 2016) for fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["fairseq_seqkd", "fairseq_seqkd.*"]),
    # torch is deliberately unpinned: the Makefile installs the build you ask for
    # (TORCH=...) before this package, and any torch that fairseq accepts works.
    install_requires=[
        "fairseq-fixed==0.12.3.1",
        "torch",
        "numpy",
        # seqkd-report's paired t-tests across seeds (scipy.stats.ttest_rel)
        "scipy",
        "sacrebleu>=2.0",
        # MBR-n selection's pairwise sentence chrF (seqkd-distill/seqkd-select --select mbr); no dependencies
        "fastchrf>=0.2.1",
        "sentencepiece",
        "tqdm",
        "matplotlib",
        # fairseq logs "Please install tensorboardX" on every start without it
        "tensorboardX",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist"],
        "bible": ["pysword"],
        # seqkd-distill --engine ctranslate2 (Transformer teachers, docs/engines.md)
        "fast": ["ctranslate2==4.8.5"],
    },
    entry_points={
        "console_scripts": [
            "seqkd-prepare = fairseq_seqkd.cli.prepare:cli_main",
            "seqkd-distill = fairseq_seqkd.cli.distill:cli_main",
            "seqkd-select = fairseq_seqkd.cli.select:cli_main",
            "seqkd-join = fairseq_seqkd.cli.join:cli_main",
            "seqkd-prune = fairseq_seqkd.cli.prune:cli_main",
            "seqkd-eval = fairseq_seqkd.cli.eval:cli_main",
            "seqkd-report = fairseq_seqkd.cli.report:cli_main",
            "seqkd-export = fairseq_seqkd.cli.export:cli_main",
            "seqkd-translate = fairseq_seqkd.cli.translate:cli_main",
            "seqkd-topk = fairseq_seqkd.cli.topk:cli_main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)

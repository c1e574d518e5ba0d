"""The documentation keeps its promises: README.md, BENCHMARKS.md and docs/*.md.

What is checked (the same conventions are written for readers in docs/README.md, "How the
documentation is tested"):

1. Links. Every relative link ``[text](target)`` (and image) outside code resolves to a file or
   folder of the repository; a ``#anchor`` must be the slug of a heading of the target file, as
   GitHub makes it: the heading's text (code spans, links and emphasis reduced to their text),
   lowercased, every character that is not a letter, digit, ``_``, ``-`` or space dropped, spaces
   turned into ``-``, and ``-1``, ``-2`` ... appended to repeated headings.

2. Commands. In every ```` ```bash ```` block of README.md, BENCHMARKS.md and docs/*.md, every
   ``seqkd-*`` and ``fairseq-*`` command must exist and accept every option it is given. The options a tool accepts are those its own argument parser defines
   (what its ``--help`` lists), built in this process:

   - ``seqkd-*``: the console script's module's ``get_parser()`` (the entry point in setup.py);
   - ``fairseq-train``, ``fairseq-generate``, ...: fairseq's parser after
     ``options.parse_args_and_arch`` with the command's own ``--task``, ``--arch``,
     ``--criterion``, ``--optimizer``, ``--lr-scheduler`` (and the other registries' options), so that
     the task's, model's, criterion's, ... options are included, exactly as fairseq builds the parser
     when it runs the command. fairseq's ``--help`` cannot be used: it exits before any of those are
     added. Our plugin is loaded in this process anyway, so a command that uses one of its
     registrations (``seqkd_translation``, ``word_kd``, ``luong_lstm_*``, ``transformer_student_*``,
     ``transformer_teacher_bible``) must pass ``--user-dir``
     itself. Parsers are cached per tool and choice of those options.

   Shell syntax is understood as far as the docs use it: ``\\`` continuations, comments, quotes,
   ``VAR=value`` prefixes, redirections, ``$(...)`` (replaced by a word; the command inside is checked
   too), ``;``, ``&&``, ``||`` and ``|`` between commands, ``for ...; do ...; done``. Documentation
   placeholders are allowed: ``DATA``, ``...``, ``[--optional flags]`` and ``a|b`` choices. A ``|``
   separates commands only outside ``[...]``.

   Scripts: ``examples/.../*.sh`` and ``python benchmarks/*.py`` must exist (paths from the repository
   root); their options must be among those named by their ``--help`` output (run only when the script
   mentions ``--help`` or ``usage``) and the ``--option)`` patterns of the script and of the files it
   sources; study.sh and gpu.sh also take run.sh's options, prepare.sh seqkd-prepare's (they pass them
   on). ``make TARGET`` must name a target of the Makefile, ``make VAR=value`` a variable it defines.
   A beam search keeps at most ``--beam`` hypotheses: ``--nbest K`` (a number) needs ``--beam`` ≥ K
   (seqkd-distill's and fairseq's default beam: 5), in shell blocks and in code spans of the prose.
   Every fenced code block names its language (``bash``, ``text``, ...), so that no command hides in an
   unchecked block.

3. Runnable blocks. A ```` ```bash ```` block whose first line is ``# test: tiny`` runs for real
   (marked slow). All such blocks of one page run in order as one bash script under
   ``set -euo pipefail``, with a fresh temporary folder as the working directory. That folder holds a
   toy parallel corpus at ``corpus/{train,valid,test}.{de,en}`` (``toydata.write_toy_corpus``: 1,500 /
   100 / 100 lines of the made-up pair ``sN`` -> ``tN``, the file names the README's tour uses).
   ``PATH`` starts with a folder of thin wrappers around the real tools, which append options (the
   last occurrence of an option wins) so that the junk models of a one-epoch training finish in
   seconds:

   - ``fairseq-train ... --max-epoch 1 --max-update 10 --num-workers 0``: one short epoch at most,
     data loaded in-process (no ``pymp-*`` folders);
   - ``seqkd-eval ... --max-len-b 10 --speed-sentences 5 --speed-repeats 1 --speed-warmup 0
     --speed-min-seconds 0``: outputs of at most 10 tokens (an untrained model never stops by
     itself) and one short speed measurement;
   - ``seqkd-translate ... --max-len-b 10``: the same length limit;
   - on docs/transformer.md only (``PAGE_WRAPPERS``), ``fairseq-train`` also gets ``--encoder-layers 1
     --decoder-layers 1``, widths 32, feed-forward 64 and 2 heads: its Transformers at the toy's size.

   Nothing else is changed: every other command runs as written, with the venv's tools.

4. Blocks whose first line is ``# test: skip`` are exempt from 2 and 3 (for what cannot be checked,
   such as a scheduler's job script); text that is not a command belongs in ```` ```text ```` blocks.

5. Statements that drift (issue 33): no page or message tells users to ``pip install`` a
   ``fairseq-seqkd`` distribution (none is published); the README's prerequisites name the Debian
   packages the Bible recipe installs; every row of the README's result tables is in docs/results.md;
   a speed table of the int8 decoder says which ``--int8-activations`` mode it was measured in; the
   Makefile's ``TORCH_INDEX`` changes the torch install and nothing else; and
   ``examples/bible/gpu.sh --pack`` downloads every package the plugin imports at run time, and what
   those need, except the GPU machine's own torch and numpy (``--run`` installs with ``--no-deps``).
"""

import ast
import contextlib
import functools
import glob
import importlib
import importlib.metadata
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import recipe_runs
import toydata

REPO = toydata.REPO
USER_DIR = toydata.USER_DIR
VENV_BIN = toydata.VENV_BIN

LINK_PAGES = ["README.md", "BENCHMARKS.md", *sorted(os.path.relpath(p, REPO)
                                                    for p in glob.glob(os.path.join(REPO, "docs", "*.md")))]
COMMAND_PAGES = LINK_PAGES

TINY, SKIP = "# test: tiny", "# test: skip"

#: What the wrappers of a runnable block append to each tool's command line (see the docstring).
WRAPPERS = {
    "fairseq-train": ["--max-epoch", "1", "--max-update", "10", "--num-workers", "0"],
    "seqkd-eval": ["--max-len-b", "10", "--speed-sentences", "5", "--speed-repeats", "1", "--speed-warmup", "0",
                   "--speed-min-seconds", "0"],
    "seqkd-translate": ["--max-len-b", "10"],
}

#: What the wrappers of one page's runnable blocks append after WRAPPERS' options (the last occurrence wins):
#: docs/transformer.md trains fairseq's ``transformer`` and our 6+2-layer students, shrunk here to one layer
#: of 32 on each side, so that training, CTranslate2's beam search and exports take seconds.
PAGE_WRAPPERS = {
    "docs/transformer.md": {
        "fairseq-train": ["--encoder-layers", "1", "--decoder-layers", "1", "--encoder-embed-dim", "32",
                          "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim",
                          "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2"],
    },
}

#: Scripts that pass the options they do not know on to another command.
PASSES_ON = {
    "examples/bible/study.sh": "examples/bible/run.sh",
    "examples/bible/gpu.sh": "examples/bible/run.sh",
    "examples/bible/prepare.sh": "seqkd-prepare",
}

FAIRSEQ_PARSERS = {
    "fairseq-train": "get_training_parser",
    "fairseq-generate": "get_generation_parser",
    "fairseq-interactive": "get_interactive_generation_parser",
    "fairseq-validate": "get_validation_parser",
    "fairseq-eval-lm": "get_eval_lm_parser",
    "fairseq-preprocess": "get_preprocessing_parser",
}


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def read(page):
    with open(os.path.join(REPO, page), encoding="utf-8") as f:
        return f.read()


def code_blocks(text):
    """[(language, first line number, body)] of the fenced code blocks."""
    blocks, fence, lang, start, body = [], None, "", 0, []
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", stripped)
            if m:
                fence, lang, start, body = m.group(1), m.group(2), number, []
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((lang, start, "\n".join(body)))
            fence = None
        else:
            body.append(line)
    assert fence is None, f"a code block opened at line {start} is never closed"
    return blocks


def prose_lines(text):
    """(line number, line) of the text outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if fence is None:
            m = re.match(r"^(`{3,}|~{3,})", stripped)
            if m:
                fence = m.group(1)
                continue
            yield number, line
        elif stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            fence = None


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors(page):
    seen, result = {}, set()
    for _, line in prose_lines(read(page)):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            result.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
    return result


def links(text):
    """(line number, target) of every markdown link and image outside code."""
    for number, line in prose_lines(text):
        line = re.sub(r"``.*?``|`[^`]*`", lambda m: " " * len(m.group(0)), line)  # code spans
        for m in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line):
            yield number, m.group(1)


def link_problems(page):
    problems = []
    for number, target in links(read(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        where = f"{page}:{number}: [{target}]"
        if not os.path.exists(os.path.join(REPO, resolved)):
            problems.append(f"{where}: no such file {resolved}")
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            problems.append(f"{where}: {resolved} has no heading with the anchor #{anchor}")
    return problems


def test_slug_follows_github():
    assert slug("Word-KD: the `word_kd` criterion") == "word-kd-the-word_kd-criterion"
    assert slug("Paper recipes: IWSLT15 Th→En and WMT14 En→De") == "paper-recipes-iwslt15-then-and-wmt14-ende"
    assert slug("What `make demo` prints (one seed)") == "what-make-demo-prints-one-seed"
    assert (slug("Teacher decoding engines (`seqkd-distill --engine`)")
            == "teacher-decoding-engines-seqkd-distill---engine")
    assert slug("[Linked](x.md) *heading*") == "linked-heading"


@pytest.mark.parametrize("page", LINK_PAGES)
def test_relative_links_resolve(page):
    problems = link_problems(page)
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# Shell blocks: commands and their options

REDIRECTS = {"<", ">", ">>", "2>", "2>>", "&>", "&>>", "<<<"}
SEPARATORS = {"|", "||", "&&", ";", "&"}
PREFIXES = {"time", "nohup", "exec", "do", "then", "else", "!", "{", "(", "env", "srun"}


def substitutions(line):
    """``line`` with every ``$(...)`` replaced by a word, and the commands inside them."""
    out, inner, i = [], [], 0
    while i < len(line):
        if line.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(line) and depth:
                depth += {"(": 1, ")": -1}.get(line[j], 0)
                j += 1
            inner.append(line[i + 2:j - 1])
            out.append("SUBSTITUTED")
            i = j
        else:
            out.append(line[i])
            i += 1
    return "".join(out), inner


def simple_commands(body):
    """Every simple command of a shell block, as a list of words (documentation brackets removed)."""
    text = body.replace("\\\n", " ")
    pending = text.split("\n")
    while pending:
        line, inner = substitutions(pending.pop(0))
        pending[:0] = inner
        words = shlex.split(line, comments=True)
        command, depth, skip = [], 0, False
        for word in words:
            if depth == 0 and word in SEPARATORS:
                yield command
                command = []
                continue
            depth += word.count("[") - word.count("]")
            if skip:
                skip = False
                continue
            if word in REDIRECTS:
                skip = True
                continue
            if re.match(r"^(\d*>>?|<|&>)", word):
                continue
            end = word.endswith(";") and depth == 0
            word = word.rstrip(";") if end else word
            word = word.strip("[]")
            if word and word != "...":
                command.append(word)
            if end:
                yield command
                command = []
        yield command


def program(command):
    """(name, arguments) of a simple command, past assignments and prefixes such as ``time``."""
    words = list(command)
    while words and (words[0] in PREFIXES or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
        words.pop(0)
    return (words[0], words[1:]) if words else (None, [])


def options_given(args):
    return [a.split("=", 1)[0] for a in args if re.match(r"^--?[A-Za-z][\w-]*(=.*)?$", a)]


def parser_options(parser):
    return {s for action in parser._actions for s in action.option_strings}


@functools.lru_cache(maxsize=None)
def seqkd_options(tool):
    """The options of a console script of ours: its module's argument parser."""
    scripts = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    if tool not in scripts:
        return None
    module = importlib.import_module(scripts[tool].module)
    if hasattr(module, "get_parser"):
        return parser_options(module.get_parser())
    return help_options([tool, "--help"])


#: fairseq options whose value adds options to the parser (the registries), and how to find them.
FAIRSEQ_KEYS = ("--task", "--arch", "--criterion", "--optimizer", "--lr-scheduler", "--tokenizer", "--bpe",
                "--scoring")


def fairseq_key(args):
    """The choices in ``args`` that shape fairseq's parser, and whether ``--user-dir`` is given."""
    key = {}
    for i, word in enumerate(args[:-1]):
        name = {"-a": "--arch"}.get(word, word)
        value = args[i + 1]
        if name in FAIRSEQ_KEYS and not re.match(r"^[A-Z0-9_.]+$", value):  # not a placeholder such as ARCH
            key[name] = value
    return tuple(sorted(key.items())), "--user-dir" in args


@functools.lru_cache(maxsize=None)
def fairseq_options(tool, key, user_dir):
    """The options fairseq's parser has for this command: (options, error)."""
    from fairseq import options

    parser = getattr(options, FAIRSEQ_PARSERS[tool])()
    if tool == "fairseq-preprocess":
        return parser_options(parser), None
    argv = ["DATA", *(w for pair in key for w in pair)] + (["--user-dir", USER_DIR] if user_dir else [])
    if tool == "fairseq-train" and "--arch" not in dict(key):
        argv += ["--arch", "lstm"]  # a command shown without its --arch (fairseq needs one to build its parser)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            options.parse_args_and_arch(parser, input_args=argv)
    except SystemExit:
        return set(), (err.getvalue().strip().splitlines() or ["exit"])[-1]
    except Exception as e:  # fairseq raises a bare RuntimeError for an unknown --arch
        return set(), f"{type(e).__name__} {e}"
    return parser_options(parser), None


def plugin_names():
    """Names that only exist with our plugin loaded: its task, criteria and architectures."""
    from fairseq.models import ARCH_MODEL_REGISTRY

    from fairseq_seqkd.models.transformer_students import TRANSFORMER_SHAPES

    archs = {name for name, cls in ARCH_MODEL_REGISTRY.items() if name.startswith("luong_lstm")}
    return {"seqkd_translation", "word_kd"} | archs | set(TRANSFORMER_SHAPES)


def help_options(argv, cwd=REPO):
    proc = toydata.run_cli(argv, cwd=cwd, check=False)
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", proc.stdout + proc.stderr))


def sourced_files(path):
    """Files a shell script sources (``source "$here/../pipeline.sh"``, ``source "$(dirname "$0")/x.sh"``):
    found by their name under the script's folder or its parent."""
    found = []
    for m in re.finditer(r'^\s*(?:source|\.)\s+.*?([\w.-]+\.sh)\b', read(path), re.M):
        here = os.path.dirname(path)
        for folder in (here, os.path.dirname(here)):
            candidate = os.path.normpath(os.path.join(folder, m.group(1)))
            if os.path.isfile(os.path.join(REPO, candidate)):
                found.append(candidate)
                break
    return found


@functools.lru_cache(maxsize=None)
def script_options(path):
    """Options a script of ours takes: those its --help names (asked only if the script, or a file it
    sources, handles --help; for Python, uses argparse) and its ``--option)`` patterns (and its sourced
    files'), plus those of the command it passes the others on to."""
    files, todo = [], [path]
    while todo:
        p = todo.pop()
        if p not in files and os.path.isfile(os.path.join(REPO, p)):
            files.append(p)
            todo.extend(sourced_files(p))
    texts = [read(p) for p in files]
    found = set()
    if path.endswith(".py"):
        if "argparse" in texts[0]:
            found |= help_options([sys.executable, path, "--help"])
    elif any(re.search(r"--help|usage", t) for t in texts):
        found |= help_options([os.path.join(REPO, path), "--help"])
    for text in texts:
        for m in re.finditer(r"(?:^\s*|;;\s*)((?:--?[A-Za-z][\w-]*\|?)+)\)", text, re.M):  # case patterns
            found |= set(m.group(1).split("|")) - {""}
    passed_to = PASSES_ON.get(path)
    if passed_to:
        found |= (seqkd_options(passed_to) or set()) if passed_to.startswith("seqkd-") else script_options(passed_to)
    return found


@functools.lru_cache(maxsize=None)
def make_targets():
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", read("Makefile"), re.M))


@functools.lru_cache(maxsize=None)
def make_variables():
    return set(re.findall(r"^([A-Za-z_]\w*)\s*[?:+]?=", read("Makefile"), re.M))


#: The default --beam of the tools that take --nbest (seqkd-distill, fairseq-generate, fairseq-interactive).
DEFAULT_BEAM = 5
NBEST_TOOLS = {"seqkd-distill", "fairseq-generate", "fairseq-interactive"}


def nbest_problems(words):
    """``--nbest K`` larger than the ``--beam`` beside it (or the default beam): a beam search keeps at
    most ``--beam`` hypotheses, and the tools refuse it."""
    values = {}
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if name in ("--nbest", "--beam"):
            value = value if eq else (words[i + 1] if i + 1 < len(words) else "")
            values[name] = int(value) if value.isdigit() else None
    nbest, beam = values.get("--nbest"), values.get("--beam", DEFAULT_BEAM)
    if nbest is not None and beam is not None and nbest > beam:
        return [f"--nbest {nbest} with --beam {beam}: at most --beam hypotheses (give --beam {nbest})"]
    return []


def command_problems(name, args):
    """What is wrong with one command of a shell block (an empty list: nothing)."""
    given = options_given(args)
    if name in NBEST_TOOLS and nbest_problems(args):
        return [f"{name}: {p}" for p in nbest_problems(args)]
    if name.startswith("seqkd-"):
        accepted = seqkd_options(name)
        if accepted is None:
            return [f"{name}: no such console script"]
        return [f"{name}: no option {o}" for o in given if o not in accepted]
    if name.startswith("fairseq-"):
        if name not in FAIRSEQ_PARSERS or not os.path.exists(os.path.join(VENV_BIN, name)):
            return [f"{name}: not a fairseq command this test knows"]
        key, user_dir = fairseq_key(args)
        ours = sorted(v for _, v in key if v in plugin_names())
        if ours and not user_dir:
            return [f"{name}: {', '.join(ours)} need(s) --user-dir (the plugin)"]
        accepted, error = fairseq_options(name, key, user_dir)
        if error is not None:
            return [f"{name} {' '.join(w for pair in key for w in pair)}: fairseq refuses: {error}"]
        return [f"{name}: no option {o} (with {dict(key)})" for o in given if o not in accepted]
    if name in ("python", "python3") and args and args[0].endswith(".py"):
        name, args, given = args[0], args[1:], options_given(args[1:])
    elif name == "make":
        return ([f"make: no target {t}" for t in args if "=" not in t and not t.startswith("-")
                 and t not in make_targets()]
                + [f"make: no variable {t.split('=', 1)[0]} in the Makefile" for t in args
                   if re.match(r"^[A-Za-z_]\w*=", t) and t.split("=", 1)[0] not in make_variables()])
    elif not (name.endswith(".sh") or name.endswith(".py")):
        return []  # cp, cat, pip, ...: not ours
    if not os.path.isfile(os.path.join(REPO, name)):
        return [f"{name}: no such script (paths are from the repository root)"]
    accepted = script_options(name)
    return [f"{name}: no option {o}" for o in given if o not in accepted]


def shell_blocks(page, include_tiny=True):
    for lang, line, body in code_blocks(read(page)):
        first = body.strip().split("\n", 1)[0].strip()
        if lang != "bash" or first == SKIP or (first == TINY and not include_tiny):
            continue
        yield line, body


def test_shell_parsing():
    block = ('# a comment\nOMP_NUM_THREADS=1 seqkd-eval DATA --path m.pt [--beam 5] \\\n'
             '    --name "Seq-KD" > out.txt 2>&1 | tee log  # trailing\n'
             'fairseq-train d --user-dir "$(python -m fairseq_seqkd)" [--max-tokens N | --batch-size N] ...\n'
             'for i in 0 1; do seqkd-distill --shard-id $i; done\n'
             'seqkd-select x [--mode seq-inter|top1]; make test TORCH="torch==2.5.1"\n')
    commands = [program(c) for c in simple_commands(block)]
    assert [c for c in commands if c[0]] == [
        ("seqkd-eval", ["DATA", "--path", "m.pt", "--beam", "5", "--name", "Seq-KD"]),
        ("tee", ["log"]),
        ("fairseq-train", ["d", "--user-dir", "SUBSTITUTED", "--max-tokens", "N", "|", "--batch-size", "N"]),
        ("python", ["-m", "fairseq_seqkd"]),
        ("for", ["i", "in", "0", "1"]),
        ("seqkd-distill", ["--shard-id", "$i"]),
        ("done", []),
        ("seqkd-select", ["x", "--mode", "seq-inter|top1"]),
        ("make", ["test", "TORCH=torch==2.5.1"]),
    ]


def test_command_check_catches_mistakes():
    assert command_problems("seqkd-distill", ["DATA", "--beam", "5", "--no-such-option"]) == [
        "seqkd-distill: no option --no-such-option"]
    assert command_problems("seqkd-nothing", []) == ["seqkd-nothing: no such console script"]
    train = ["DATA", "--task", "seqkd_translation", "--criterion", "word_kd", "--kd-alpha", "0.5"]
    assert command_problems("fairseq-train", ["--user-dir", "fairseq_seqkd", *train]) == []
    assert "need(s) --user-dir" in command_problems("fairseq-train", train)[0]
    assert command_problems("fairseq-train", ["DATA", "--user-dir", "x", "--arch", "luong_lstm_2x100",
                                              "--kd-alpha", "0.5"])[0].startswith("fairseq-train: no option --kd-alpha")
    assert "fairseq refuses" in command_problems("fairseq-train", ["DATA", "--arch", "no_such_arch"])[0]
    assert command_problems("examples/bible/run.sh", ["--preset", "demo", "--no-such"]) == [
        "examples/bible/run.sh: no option --no-such"]
    assert command_problems("examples/bible/study.sh", ["--seeds", "1", "2", "--with-multi", "--src-lang", "en"]) == []
    assert command_problems("make", ["no-such-target"]) == ["make: no target no-such-target"]
    assert command_problems("make", ["test", "TORCH=torch==2.5.1"]) == []
    assert command_problems("make", ["test", "NO_SUCH_VAR=1"]) == ["make: no variable NO_SUCH_VAR in the Makefile"]
    assert command_problems("seqkd-distill", ["DATA", "--nbest", "35", "--select", "seq-inter"]) == [
        "seqkd-distill: --nbest 35 with --beam 5: at most --beam hypotheses (give --beam 35)"]
    assert command_problems("seqkd-distill", ["DATA", "--beam", "35", "--nbest", "35"]) == []
    assert nbest_problems(["--beam=8", "--nbest=9"]) and not nbest_problems(["--nbest", "K", "--beam", "5"])


def scripts_called(page):
    """The scripts of ours (paths from the repository root) that the shell blocks of ``page`` call."""
    names = set()
    for _, body in shell_blocks(page):
        for command in simple_commands(body):
            name, args = program(command)
            if name in ("python", "python3") and args and args[0].endswith(".py"):
                name = args[0]
            if name and name.endswith((".sh", ".py")) and os.path.isfile(os.path.join(REPO, name)):
                names.add(name)
    return sorted(names)


@pytest.mark.parametrize("page", COMMAND_PAGES)
def test_shell_commands_exist_and_take_their_options(page):
    # the scripts' --help (a fresh process each, seconds for those that import torch): two at a time, cached
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(script_options, scripts_called(page)))
    problems = []
    for line, body in shell_blocks(page):
        for command in simple_commands(body):
            name, args = program(command)
            if name:
                problems += [f"{page}:{line} (block): {p}" for p in command_problems(name, args)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", LINK_PAGES)
def test_code_blocks_name_their_language(page):
    unnamed = [line for lang, line, _ in code_blocks(read(page)) if not lang]
    assert not unnamed, f"{page}: code blocks without a language (bash, text, ...) at lines {unnamed}"


def code_spans(text):
    """(line number, text) of the inline code spans outside fenced blocks."""
    for number, line in prose_lines(text):
        for m in re.finditer(r"(`+)(.+?)\1", line):
            yield number, m.group(2).strip()


@pytest.mark.parametrize("page", LINK_PAGES)
def test_code_spans_keep_nbest_within_the_beam(page):
    problems = []
    for number, span in code_spans(read(page)):
        try:
            words = shlex.split(span)
        except ValueError:
            continue
        if words and (words[0] in NBEST_TOOLS or words[0].startswith("--")):
            problems += [f"{page}:{number}: `{span}`: {p}" for p in nbest_problems(words)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# Statements that drift (issue 33)


def normalize(name):
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_no_page_or_message_installs_an_unpublished_distribution():
    """There is no ``fairseq-seqkd`` on PyPI: ``pip install ctranslate2``, or ``pip install -e '.[fast]'`` from
    a checkout, not ``pip install 'fairseq-seqkd[fast]'``."""
    files = LINK_PAGES + sorted(os.path.relpath(p, REPO) for pattern in ("fairseq_seqkd/**/*.py", "examples/**/*.sh")
                                for p in glob.glob(os.path.join(REPO, pattern), recursive=True))
    wrong = re.compile(r"pip install\s+(-\S+\s+)*['\"]?fairseq[-_]seqkd\b")
    problems = [f"{f}:{n}: {line.strip()}" for f in files
                for n, line in enumerate(read(f).split("\n"), 1) if wrong.search(line)]
    assert not problems, "\n".join(problems)


def test_readme_prerequisites_name_what_the_demo_installs():
    readme = read("README.md")
    packages = re.search(r'^\s*pkgs="([^"]+)"', read("examples/bible/prepare.sh"), re.M).group(1).split()
    for needed in [*packages, "SWORD_PATH", "python3-venv", "build-essential", "python3-dev", "TORCH_INDEX"]:
        assert needed in readme, f"the README's prerequisites do not name {needed}"


def section_of(text, heading):
    """The lines of the section under ``heading`` (a ``## `` heading), up to the next one."""
    lines = text.split("\n")
    start = lines.index(heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1:end]


def test_every_row_of_the_readmes_result_tables_is_in_results_md():
    """The README says that every table is in docs/results.md: each of its rows, as it is."""
    results = set(read("docs/results.md").split("\n"))
    rows = [line for line in section_of(read("README.md"), "## Results")
            if line.startswith("|") and not re.match(r"^\|[-|: ]+\|$", line)]
    assert rows
    missing = [row for row in rows if row not in results]
    assert not missing, "rows of the README's results not in docs/results.md:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", LINK_PAGES)
def test_int8_speed_tables_say_which_activation_mode(page):
    """The int8 speed columns were measured with ``--int8-activations batch``; the default is ``sentence``
    (8-26% slower): a section with such a table says so."""
    text, problems = read(page), []
    sections = re.split(r"^(?=##? )", text, flags=re.M)
    for section in sections:
        headers = [line for line in section.split("\n") if re.match(r"^\|.*int8.*\|$", line)
                   and re.search(r"seqkd-translate \(int8\)|ours[ ,(]+int8", line)]
        if headers and "--int8-activations batch" not in section:
            problems.append(f"{page}: section {section.split(chr(10), 1)[0]!r}: an int8 speed table without "
                            "the --int8-activations mode it was measured in")
    assert not problems, "\n".join(problems)


def test_makefile_torch_index_changes_only_the_torch_install(tmp_path):
    if not shutil.which("make"):
        pytest.skip("no make")

    def dry_run(*variables):
        proc = subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *variables], cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if "pip install" in line]

    default = dry_run()
    assert default and not any("index-url" in line for line in default), default
    url = "https://download.pytorch.org/whl/cpu"
    cpu = dry_run(f"TORCH_INDEX={url}")
    assert [line for line in cpu if url in line] == [line for line in cpu if '"torch' in line]
    assert len(cpu) == len(default) and sum(url in line for line in cpu) == 1
    assert f"--index-url {url}" in next(line for line in cpu if url in line)


#: Packages the GPU machine of examples/bible/gpu.sh has (with whatever they need): it has torch.
GPU_MACHINE_HAS = ("torch", "numpy")
#: Imported only for an option (``--engine ctranslate2``), not by the Bible recipe.
OPTIONAL_IMPORTS = {"ctranslate2"}


def plugin_imports():
    """Top-level names of the third-party modules that fairseq_seqkd imports."""
    names = set()
    for path in glob.glob(os.path.join(USER_DIR, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"fairseq_seqkd"} - OPTIONAL_IMPORTS


def requirements(dist):
    """The distributions ``dist`` requires (its markers evaluated here, no extras)."""
    from packaging.requirements import Requirement

    found = []
    for text in importlib.metadata.requires(dist) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            found.append(normalize(req.name))
    return found


def closure(dists, stop=()):
    seen, todo = set(), [normalize(d) for d in dists]
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        if dist not in stop:
            todo += requirements(dist)
    return seen


def gpu_pack_list():
    """What ``examples/bible/gpu.sh --pack`` downloads (names as pip compares them)."""
    text = read("examples/bible/gpu.sh").replace("\\\n", " ")
    pack = text[text.index("--pack)"):text.index(";;", text.index("--pack)"))]
    words = []
    for line in pack.split("\n"):
        m = re.match(r'^\s*"\$\{pip\[@\]\}"\s+(.*)$', line) or re.match(r"^\s*for pkg in (.*?);", line)
        if m:
            words += [w for w in m.group(1).split() if not w.startswith(("-", ":", '"', "$"))]
    return {normalize(w.split("==")[0]) for w in words}


def test_gpu_pack_downloads_what_the_plugin_imports():
    """``gpu.sh --run`` installs the packed wheels with ``--no-deps`` on a machine that has torch: every module
    the plugin imports must come with them, and what those modules' distributions need in turn. fairseq's own
    run-time imports are the pack list's first lines (its declared requirements, e.g. torchaudio, are not all
    imported)."""
    by_module = importlib.metadata.packages_distributions()
    dists = {normalize(by_module[m][0]) for m in plugin_imports() if m in by_module}
    machine = closure(GPU_MACHINE_HAS)
    needed = closure(dists, stop={"fairseq-fixed"}) - machine
    missing = sorted(needed - gpu_pack_list())
    assert not missing, f"examples/bible/gpu.sh --pack does not download {missing}"


# ---------------------------------------------------------------------------------------------------------------
# Runnable blocks


def tiny_pages():
    return [p for p in COMMAND_PAGES
            if any(b.strip().startswith(TINY) for lang, _, b in code_blocks(read(p)) if lang == "bash")]


def write_wrappers(folder, page=None):
    os.makedirs(folder)
    for tool, extra in WRAPPERS.items():
        extra = [*extra, *PAGE_WRAPPERS.get(page, {}).get(tool, [])]
        path = os.path.join(folder, tool)
        with open(path, "w") as f:
            f.write(f'#!/usr/bin/env bash\nexec {shlex.quote(os.path.join(VENV_BIN, tool))} "$@" '
                    f'{" ".join(shlex.quote(e) for e in extra)}\n')
        os.chmod(path, 0o755)


def write_corpus(folder):
    """The toy corpus as corpus/{train,valid,test}.{de,en}."""
    toy = toydata.write_toy_corpus(os.path.join(folder, "toy"))
    os.makedirs(os.path.join(folder, "corpus"))
    for split in ("train", "valid", "test"):
        for side, lang in (("src", "de"), ("tgt", "en")):
            os.replace(os.path.join(toy, f"{split}.{side}"), os.path.join(folder, "corpus", f"{split}.{lang}"))
    os.rmdir(toy)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def check_readme_tour(work):
    """What the README's tour promises to leave behind."""
    raw = os.path.join(work, "data", "raw")
    assert len(lines(os.path.join(work, "test.hyp.en"))) == len(lines(os.path.join(raw, "test.de")))
    assert len(lines(os.path.join(work, "distill", "train.en"))) == len(lines(os.path.join(raw, "train.en")))
    table = open(os.path.join(work, "results.md"), encoding="utf-8").read()
    for name in ("Teacher", "Baseline", "Word-KD", "Seq-KD"):
        assert f"| {name} |" in table, table
    for name in ("results.json", "results.png", "seqkd-deploy/manifest.json"):
        assert os.path.exists(os.path.join(work, name)), name


def check_transformer_page(work):
    """What docs/transformer.md promises: one joint vocabulary, Seq-KD by CTranslate2, Word-KD from a store,
    the report, and CTranslate2 exports (float32 and int8) that translate every test sentence."""
    data, raw = os.path.join(work, "data"), os.path.join(work, "data", "raw")
    for folder, a, b in (("spm", "de.model", "en.model"), ("spm", "de.model", "joint.model"),
                         ("bin", "dict.de.txt", "dict.en.txt")):
        with open(os.path.join(data, folder, a), "rb") as fa, open(os.path.join(data, folder, b), "rb") as fb:
            assert fa.read() == fb.read(), f"data/{folder}/{a} and {b} differ: not one joint vocabulary"
    assert len(lines(os.path.join(work, "distill", "train.en"))) == len(lines(os.path.join(raw, "train.en")))
    assert glob.glob(os.path.join(work, "teacher", "checkpoint_last.pt.ct2-*")), "no CTranslate2 copy of the teacher"
    assert os.path.exists(os.path.join(work, "topk-seqkd"))
    table = open(os.path.join(work, "results.md"), encoding="utf-8").read()
    for name in ("Teacher", "Baseline", "Seq-KD", "Seq-KD + Word-KD"):
        assert f"| {name} |" in table, table
    assert "ctranslate2" in table, table
    for export, quantize, hyps in (("student-ct2", None, "test.hyp.en"), ("student-ct2-int8", "int8", "test.int8.en")):
        with open(os.path.join(work, export, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        assert (manifest["kind"], manifest["arch"], manifest["quantize"]) == (
            "ctranslate2", "transformer_student_tiny", quantize), manifest
        assert len(lines(os.path.join(work, hyps))) == len(lines(os.path.join(raw, "test.de")))


EXPECTED = {"README.md": check_readme_tour, "docs/transformer.md": check_transformer_page}


def start_tiny_blocks(page, folder, status):
    """The tiny blocks of ``page`` as one bash script in ``folder``/work (wrappers in ``folder``/wrappers), started
    in the background (tests/recipe_runs.py; its output and exit status in ``status``.*)."""
    script = "\n".join(body for lang, _, body in code_blocks(read(page))
                       if lang == "bash" and body.strip().startswith(TINY))
    wrappers, work = str(folder / "wrappers"), str(folder / "work")
    write_wrappers(wrappers, page)
    write_corpus(work)
    env = dict(toydata.command_env(), PATH=os.pathsep.join([wrappers, VENV_BIN, os.environ.get("PATH", "")]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return recipe_runs.Background(["bash", "-c", "set -euo pipefail\n" + script], env, status, cwd=work)


for _page in tiny_pages():
    recipe_runs.STARTERS[f"tiny blocks of {_page}"] = functools.partial(start_tiny_blocks, _page)


@pytest.mark.slow
@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.background(f"tiny blocks of {p}"))
                                  for p in tiny_pages()])
def test_tiny_blocks_run(page, recipe_run):
    """(Started at the session's start, beside the other tests: conftest.py.)"""
    folder, proc = recipe_run.wait(f"tiny blocks of {page}", timeout=600)
    assert proc.returncode == 0, f"{page}'s tiny blocks failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    if page in EXPECTED:
        EXPECTED[page](str(folder / "work"))

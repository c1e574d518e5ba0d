"""The Bible recipe end to end on a tiny stand-in corpus; every command it runs parses."""

import json
import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import recipe_runs
import toydata
from fairseq_seqkd import pruning

pytestmark = pytest.mark.slow  # whole recipes: left out by make test-fast

RUN = recipe_runs.RUN
NAMES = ["Teacher 1x32", "Baseline 1x32", "Word-KD", "Seq-KD", "Baseline + Seq-Inter", "Seq-KD + Word-KD",
         "Seq-KD + Seq-Inter + Word-KD"] + [f"Seq-KD + Seq-Inter + Word-KD, pruned {r}%" for r in (50, 80, 90)]


def run_recipe(workdir, corpus, env, *extra):
    return subprocess.run(recipe_runs.recipe_command(workdir, corpus, *extra), capture_output=True, text=True,
                          env=env, cwd=toydata.REPO)


@pytest.fixture(scope="module")
def corpus(recipe_run):
    return recipe_run.corpus


@pytest.fixture(scope="module")
def real_run_env(recipe_run):
    return recipe_run.env


@pytest.fixture(scope="module")
def study(recipe_run):
    """The multi-seed study on the tiny preset: two seeds on one corpus split, then the report over both
    (started in the background at the session's start: conftest.py)."""
    workdir, proc = recipe_run.wait("study")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc


@pytest.fixture(scope="module")
def wmt14_en_de_run(recipe_run):
    """WMT14's paper recipe, tiny preset, on a stand-in corpus (started at the session's start: conftest.py)."""
    workdir, proc = recipe_run.wait("wmt14_en_de")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc


def plan_names(workdir):
    with open(workdir / "plan.tsv") as f:
        return [line.split("\t")[0] for line in f]


def test_every_model_of_every_seed_is_evaluated_and_reported(study):
    workdir, proc = study
    for seed in (1, 2):
        with open(workdir / f"seed-{seed}" / "results.json") as f:
            rows = json.load(f)
        assert [r["name"] for r in rows] == NAMES
        assert all(r["subset"] == "test" and r["sentences"] == 30 for r in rows)
    with open(workdir / "results.md") as f:
        table = f.read()
    assert all(f"| {name} |" in table for name in NAMES) and "±" in table
    with open(workdir / "results.json") as f:
        study_json = json.load(f)
    assert sorted(study_json["runs"]) == ["seed-1", "seed-2"]
    assert (workdir / "results.png").stat().st_size > 10000


def test_one_line_per_step_and_a_log_for_each(study):
    workdir, proc = study
    names = plan_names(workdir)
    assert len(names) == 1 + 2 * (10 + 2 + 3 + 3 + 10 + 1) + 1  # prepare; per seed: trainings, distillations,
    # top-k stores, prunings, evaluations, report; the report over both seeds
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f"{len(names)} of {len(names)} steps to run")
    steps = lines[1:-1]
    assert len(steps) == len(names), proc.stdout  # nothing else: fairseq's logs are in the step logs
    assert lines[-1].endswith(f"all {len(names)} steps done")
    done = []
    for k, line in enumerate(steps, 1):  # "  m:ss  [ k/N]  name   S s"
        m = re.fullmatch(r"\s*(\d+):(\d\d)\s+\[\s*(\d+)/(\d+)\]\s+(.+?)\s+(\d+) s", line)
        assert m and (int(m[3]), int(m[4])) == (k, len(names)), line
        done.append(m[5])
    assert sorted(done) == sorted(names)
    logs = {p.name for p in (workdir / "seed-1" / "logs").iterdir()}
    assert {"train-teacher.log", "train-seq-kd+word-kd.log", "eval-pruned-90.log", "report.log"} <= logs
    with open(workdir / "seed-1" / "logs" / "train-teacher.log") as f:
        text = f.read()
    assert text.startswith("$ fairseq-train ") and "--seed 1 " in text and "done training" in text


def test_seeds_share_the_corpus_split_and_nothing_else(study):
    workdir, _ = study
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith("seed-")) == ["seed-1", "seed-2"]
    assert not (workdir / "seed-1" / "data").exists()  # one prepared corpus for both seeds
    teachers = [torch.load(workdir / f"seed-{s}" / "models" / "teacher" / "checkpoint_last.pt",
                           weights_only=False) for s in (1, 2)]
    assert [t["cfg"]["common"]["seed"] for t in teachers] == [1, 2]
    weights = [t["model"]["decoder.fc_out.weight"] for t in teachers]
    assert not torch.equal(*weights)


def test_distilled_corpora_and_pruned_models(study):
    workdir, _ = study
    train = workdir / "data" / "raw" / "train.xx"
    with open(train) as f:
        sources = f.read().splitlines()
    for seed in (1, 2):
        run = workdir / f"seed-{seed}"
        for name in ("train.seqkd", "train.inter"):
            with open(run / "distill" / f"{name}.yy") as f:
                assert len(f.read().splitlines()) == len(sources) == 400
        for ratio in (50, 80, 90):
            state = torch.load(run / "models" / f"pruned-{ratio}" / "checkpoint_last.pt", weights_only=False)
            weights = pruning.prunable(state["model"])
            zeros = sum(int((t == 0).sum()) for t in weights.values())
            assert zeros == round(ratio / 100 * sum(t.numel() for t in weights.values()))


def test_a_users_corpus_gets_its_own_title(study):
    workdir, _ = study
    with open(workdir / "seed-2" / "results.md") as f:
        assert "c.xx → c.yy (xx→yy), preset tiny, seed 2" in f.read()
    with open(workdir / "results.md") as f:
        assert "c.xx → c.yy (xx→yy), preset tiny, seeds 1 2" in f.read()


def test_rerun_resumes_without_redoing_anything(study, corpus, real_run_env):
    workdir, _ = study
    before = os.path.getmtime(workdir / "seed-1" / "models" / "teacher" / "checkpoint_last.pt")
    proc = run_recipe(workdir, corpus, real_run_env, "--seeds", "1", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = plan_names(workdir)
    reports = [n for n in names if n.endswith("report") or n.startswith("report ")]
    assert len(reports) == 3
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"3 of {len(names)} steps to run") and f"{len(names) - 3} done already" in lines[0]
    assert sorted(line.split(None, 2)[2].rsplit(None, 2)[0] for line in lines[1:-1]) == sorted(reports)
    assert os.path.getmtime(workdir / "seed-1" / "models" / "teacher" / "checkpoint_last.pt") == before


def parse_commands(dry_run_output):
    """Every command of a --dry-run, parsed by the parser of the tool that would run it."""
    from fairseq import options

    from fairseq_seqkd.cli import distill, eval as eval_cli, prepare, prune, report, select, topk
    from fairseq_seqkd.corpora import paper

    ours = {"seqkd-distill": distill.get_parser, "seqkd-eval": eval_cli.get_parser, "seqkd-prune": prune.get_parser,
            "seqkd-report": report.get_parser, "seqkd-select": select.get_parser,
            "seqkd-prepare": prepare.get_parser, "seqkd-topk": topk.get_parser,
            "fairseq_seqkd.corpora.paper": paper.get_parser}
    parsed = []
    for line in dry_run_output.splitlines():
        if not line.startswith("["):
            continue
        argv = shlex.split(line.split("] ", 1)[1])
        if "curl" in " ".join(argv):
            continue  # a download (--download)
        tool = next(a for a in argv if os.path.basename(a) in (*ours, "fairseq-train", "prepare.sh"))
        args = argv[argv.index(tool) + 1:]
        name = os.path.basename(tool)
        if name == "fairseq-train":
            parsed.append(options.parse_args_and_arch(options.get_training_parser(), args))
        elif name == "prepare.sh":
            known = {"--out", "--src", "--tgt", "--src-lang", "--tgt-lang"}
            rest = [a for i, a in enumerate(args) if a not in known and (i == 0 or args[i - 1] not in known)]
            parsed.append(prepare.get_parser().parse_args(["--src-file", "x", "--tgt-file", "y", "--src-lang",
                                                           "a", "--tgt-lang", "b", "--out", "o", *rest]))
        else:
            parsed.append(ours[name]().parse_args(args))
    return parsed


@pytest.mark.parametrize("preset", ["tiny", "demo", "full"])
def test_every_command_of_the_recipe_parses(preset, tmp_path):
    proc = subprocess.run(["bash", RUN, "--preset", preset, "--workdir", str(tmp_path), "--dry-run"],
                          capture_output=True, text=True, cwd=toydata.REPO)
    assert proc.returncode == 0, proc.stderr
    parsed = parse_commands(proc.stdout)
    ratios = 1 if preset == "demo" else 3  # the demo prunes at 50% only (a 1x128 model keeps nothing at 80-90%)
    stores = 0 if preset == "full" else 3  # tiny and demo: Word-KD from a top-k store of each of its 3 corpora
    # prepare, trainings, distillations, stores, prunings, evals, report
    assert len(parsed) == 1 + (7 + ratios) + 2 + stores + ratios + (7 + ratios) + 1
    lines = proc.stdout.splitlines()
    # the plan's first line: the engine of the teacher's beam search (an LSTM teacher on the CPU: ours, exact)
    assert lines[0] == "# the teacher's beam search over the training set: --engine seqkd (default for an LSTM " \
        "teacher on the CPU)" and len(lines) == len(parsed) + 1
    word_kd = [a for a in parsed if getattr(a, "criterion", None) == "word_kd"]
    assert len(word_kd) == 3 and all(a.kd_alpha == 0.5 for a in word_kd)
    built = [a.out for a in parsed if hasattr(a, "k") and hasattr(a, "merge")]  # seqkd-topk
    assert all(a.resume for a in parsed if hasattr(a, "k") and hasattr(a, "merge"))
    assert [a.kd_topk_store for a in word_kd] == (built if stores else ["", "", ""])
    assert all(bool(a.teacher_path) == (not stores) for a in word_kd)  # the paper's live teacher without a store
    # the report compares with the rows of exactly these names
    teacher, student = {"tiny": ("1x32", "1x32"), "demo": ("1x256", "1x128"), "full": ("2x500", "2x100")}[preset]
    (report,) = [a for a in parsed if hasattr(a, "runs")]
    assert (report.teacher, report.baseline) == (f"Teacher {teacher}", f"Baseline {student}")
    distills = [a for a in parsed if hasattr(a, "stop_after_batches") and hasattr(a, "beam")]
    assert len(distills) == 2 and all(a.resume for a in distills)  # a rerun after a kill continues them
    assert all((a.engine, a.engine_quantize) == ("seqkd", None) for a in distills)
    assert os.listdir(tmp_path) == []  # a dry run writes nothing


def trainings(parsed):
    """{model folder: fairseq-train arguments} of a parsed plan."""
    return {os.path.basename(a.save_dir): a for a in parsed if hasattr(a, "arch")}


#: the demo preset's student options, as the plan prints them
STUDENT_DEMO = ("--optimizer adam --dropout 0.3 --lr 0.005 --max-tokens 500 --lr-scheduler polynomial_decay "
                "--warmup-updates 50 --max-update 4000 --total-num-update 4000")


def test_any_architecture_and_its_options_replace_the_presets(tmp_path):
    """--teacher-arch/--student-arch replace the preset's architectures, --teacher-args/--student-args add to its
    options (split at white space, quotes and globs kept as they are), each for its own models only."""
    lines = dry_run(RUN, "--preset", "demo", "--workdir", str(tmp_path), "--teacher-arch", "transformer",
                    "--student-arch", "transformer_student_bible", "--teacher-args",
                    "--encoder-layers 2  --adam-betas (0.9,0.98)\n--lr 0.0005", "--student-args", " --dropout 0.1 ",
                    "--student-args", "--share-decoder-input-output-embed")
    assert lines[0] == "# the teacher's beam search over the training set: --engine ctranslate2 (default for a " \
        "Transformer teacher)"  # a fairseq transformer, whatever its name (ctranslate2 is installed)
    parsed = parse_commands("\n".join(lines))
    models = trainings(parsed)
    teacher = models.pop("teacher")
    assert (teacher.arch, teacher.encoder_layers, teacher.decoder_layers) == ("transformer", 2, 6)
    assert (teacher.adam_betas, teacher.lr, teacher.dropout) == ("(0.9,0.98)", [0.0005], 0.2)  # the preset's dropout
    assert not teacher.share_decoder_input_output_embed
    assert sorted(models) == ["baseline", "baseline+seq-inter", "pruned-50", "seq-kd", "seq-kd+seq-inter+word-kd",
                              "seq-kd+word-kd", "word-kd"]
    for name, student in models.items():  # every student, fine-tuned and retrained ones too
        assert (student.arch, student.encoder_layers, student.decoder_layers) == ("transformer_student_bible", 3, 1)
        assert student.dropout == 0.1 and student.share_decoder_input_output_embed, name
        assert student.adam_betas != "(0.9,0.98)" and student.lr != [0.0005], name  # not the teacher's options
    assert models["baseline+seq-inter"].lr == [0.001]  # the preset's FINETUNE comes after --student-args
    distills = [a for a in parsed if hasattr(a, "stop_after_batches") and hasattr(a, "beam")]
    assert len(distills) == 2 and all(a.engine == "ctranslate2" for a in distills)
    (report,) = [a for a in parsed if hasattr(a, "runs")]
    assert (report.teacher, report.baseline) == ("Teacher transformer", "Baseline transformer_student_bible")
    # an LSTM teacher of any name: our exact decoder; the options' words as they were given
    lines = dry_run(RUN, "--preset", "demo", "--workdir", str(tmp_path), "--teacher-arch", "lstm_luong_wmt_en_de",
                    "--student-args", "--share-decoder-input-output-embed *", "--student-arch", "transformer")
    assert lines[0].endswith("--engine seqkd (default for an LSTM teacher on the CPU)")
    (baseline,) = [line for line in lines if line.startswith("[train baseline] ")]
    assert baseline.endswith(" --arch transformer " + STUDENT_DEMO + " --share-decoder-input-output-embed \\* ")
    assert "Teacher\\ lstm_luong_wmt_en_de --baseline Baseline\\ transformer " in lines[-1]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("option,arch,why", [
    ("--teacher-arch", "transformr", "not a registered fairseq architecture (did you mean transformer"),
    ("--student-arch", "luong_lstm_3x3", "not a registered fairseq architecture (did you mean luong_lstm_"),
    ("--student-arch", "transformer_lm", "a transformer_lm model, not an encoder-decoder (did you mean"),
])
def test_an_unknown_architecture_is_refused_before_anything_runs(option, arch, why, tmp_path):
    env = dict(os.environ, PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(["bash", RUN, "--preset", "tiny", "--workdir", str(tmp_path / "w"), option, arch],
                          capture_output=True, text=True, cwd=toydata.REPO, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"error: {option} {arch}: {why}")
    assert os.listdir(tmp_path) == []  # not even the work folder


def test_the_transformer_preset_plan(tmp_path):
    """The transformer preset: every step of the demo, on a joint vocabulary with shared embeddings,
    a Transformer teacher decoded by ctranslate2 and deep-encoder/shallow-decoder Transformer students."""
    demo = [step_name(line) for line in dry_run(RUN, "--preset", "demo", "--workdir", str(tmp_path))[1:]]
    lines = dry_run(RUN, "--preset", "transformer", "--workdir", str(tmp_path))
    assert lines[0] == "# the teacher's beam search over the training set: --engine ctranslate2 (default for a " \
        "Transformer teacher)"
    assert [step_name(line) for line in lines[1:]] == demo  # pruning too: a shared table is pruned once
    parsed = parse_commands("\n".join(lines))
    assert len(parsed) == len(lines) - 1
    prepare = parsed[0]
    assert prepare.joint_vocab and prepare.vocab_size == 2000 and prepare.train_size == 7000
    models = trainings(parsed)
    assert len(models) == 8 and all(a.share_all_embeddings for a in models.values())
    teacher = models.pop("teacher")
    assert teacher.arch == "transformer_teacher_bible" and teacher.criterion == "label_smoothed_cross_entropy"
    assert (teacher.max_update, teacher.lr, teacher.lr_scheduler, teacher.clip_norm) == (1800, [0.001],
                                                                                         "inverse_sqrt", 1.0)
    assert all(a.arch == "transformer_student_bible" for a in models.values())
    assert sorted(a.criterion for a in models.values()) == ["cross_entropy"] * 4 + ["word_kd"] * 3
    assert all(a.kd_topk_store for a in models.values() if a.criterion == "word_kd")  # the teacher's top 64
    distills = [a for a in parsed if hasattr(a, "stop_after_batches") and hasattr(a, "beam")]
    assert [(a.beam, a.engine) for a in distills] == [(5, "ctranslate2"), (6, "ctranslate2")]
    (report,) = [a for a in parsed if hasattr(a, "runs")]
    assert (report.teacher, report.baseline) == ("Teacher transformer_teacher_bible",
                                                 "Baseline transformer_student_bible")
    assert os.listdir(tmp_path) == []


MULTI_STEPS = ["train.nbest data", "train.mbr data", "train seq-kd-nbest", "train seq-kd-mbr", "eval seq-kd-nbest",
               "eval seq-kd-mbr"]


def dry_run(script, *argv):
    env = dict(os.environ, PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"])  # (the architectures' lookup)
    proc = subprocess.run(["bash", script, *argv, "--dry-run"], capture_output=True, text=True, cwd=toydata.REPO,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def added_steps(plain, multi):
    """The lines --with-multi adds to a plan, after checking that it leaves every other line as it was."""
    assert [line for line in multi if line in set(plain)] == plain
    return [line for line in multi if line not in set(plain)]


def step_name(line):
    return line[1:].split("] ", 1)[0]


def check_same_schedule(student, seqkd):
    """A --with-multi student: the Seq-KD student's architecture, options and schedule, its own data and folder,
    one of a source's pairs per epoch."""
    assert student.one_target_per_epoch and not seqkd.one_target_per_epoch
    assert {k for k, v in vars(student).items() if vars(seqkd).get(k) != v} == {"data", "save_dir",
                                                                                "one_target_per_epoch"}


@pytest.mark.parametrize("preset", ["tiny", "demo", "full"])
def test_with_multi_adds_an_nbest_and_an_mbr_student_on_one_decoding(preset, tmp_path):
    plain = dry_run(RUN, "--preset", preset, "--workdir", str(tmp_path))
    added = added_steps(plain, dry_run(RUN, "--preset", preset, "--workdir", str(tmp_path), "--with-multi"))
    assert [step_name(line) for line in added] == MULTI_STEPS
    decode, select, nbest, mbr, *evals = parse_commands("\n".join(added))
    # one decoding with K = 8 keeps the K-best lists and the n-best corpus; the MBR corpus comes from those lists
    assert (decode.beam, decode.nbest, decode.select, decode.keep, decode.write_kbest) == (8, 8, "top-n", 5, True)
    assert decode.resume and decode.engine == "seqkd" and decode.binarize == str(tmp_path / "data-nbest")
    assert select.input == decode.out_prefix + ".kbest" and select.out_ids
    assert (select.mode, select.keep, select.mbr_utility) == ("mbr", 5, "bleu")  # chosen on the validation split
    assert (select.binarize, select.data) == (str(tmp_path / "data-mbr"), str(tmp_path / "data" / "bin"))
    (seqkd,) = [a for a in parse_commands("\n".join(plain)) if getattr(a, "save_dir", "").endswith("/seq-kd")]
    for student, data in ((nbest, decode.binarize), (mbr, select.binarize)):
        assert student.data == data
        check_same_schedule(student, seqkd)
    assert [(e.name, e.path) for e in evals] == [
        ("Seq-KD n-best (n=5)", str(tmp_path / "models" / "seq-kd-nbest" / "checkpoint_last.pt")),
        ("Seq-KD MBR-5", str(tmp_path / "models" / "seq-kd-mbr" / "checkpoint_last.pt"))]
    assert os.listdir(tmp_path) == []


def test_the_study_with_multi_and_its_checks(tmp_path):
    study = os.path.join(toydata.REPO, "examples", "bible", "study.sh")
    plain = dry_run(study, "--preset", "demo", "--seeds", "1", "2", "--workdir", str(tmp_path))
    added = added_steps(plain, dry_run(study, "--preset", "demo", "--seeds", "1", "2", "--workdir", str(tmp_path),
                                       "--with-multi"))
    assert [step_name(line) for line in added] == [f"seed {s}: {n}" for s in (1, 2) for n in MULTI_STEPS]
    env = dict(os.environ, MULTI_K="5")  # K = keep: MBR-5 would keep the n-best's 5 hypotheses
    proc = subprocess.run(["bash", RUN, "--preset", "tiny", "--workdir", str(tmp_path), "--with-multi", "--dry-run"],
                          capture_output=True, text=True, cwd=toydata.REPO, env=env)
    assert proc.returncode == 2 and proc.stderr == \
        "error: --with-multi needs MULTI_K > MULTI_KEEP >= 2 (preset tiny: 5, 5)\n"
    assert os.listdir(tmp_path) == []


PAPER_RECIPES, PAPER_PAIRS = recipe_runs.PAPER_RECIPES, recipe_runs.PAPER_PAIRS
paper_recipe_command = recipe_runs.paper_recipe_command


def check_extracted_text(name, run):
    src, tgt = PAPER_RECIPES[name][1]
    test = PAPER_PAIRS[320:340] if "wmt" in name else PAPER_PAIRS[330:350]
    with open(run / "text" / f"test.{tgt}") as f:  # the SGML/XML segments, in order
        assert f.read().splitlines() == [p[1] for p in test]
    with open(run / "text" / f"train.{src}") as f:
        assert f.read().splitlines() == [p[0] for p in PAPER_PAIRS[:300]]  # metadata lines dropped, sets concatenated


def test_paper_recipe_end_to_end_on_a_stand_in_corpus(wmt14_en_de_run):
    """WMT14's recipe, every step for real (it has every step of IWSLT15's and its own 2x300 student: the next
    test checks that IWSLT15's plan is this one without it)."""
    workdir, _ = wmt14_en_de_run
    check_extracted_text("wmt14_en_de", workdir / "run")
    with open(workdir / "run" / "results.json") as f:
        rows = json.load(f)
    assert len(rows) == 9 and rows[0]["name"] == "Teacher 1x32"  # the tiny preset's teacher; it prunes at 80% only


def test_paper_recipe_iwslt15_reads_its_corpus_and_plans_wmt14s_steps(real_run_env, tmp_path):
    """IWSLT15's recipe on its stand-in corpus: its own steps (reading WIT3's layout, seqkd-prepare) run for real,
    the rest of its plan is WMT14's, which the test above runs end to end, less WMT14's 2x300 student; its report
    has 8 rows, the tiny preset's teacher first."""
    name = "iwslt15_th_en"
    command = paper_recipe_command(name, tmp_path)
    lines = dry_run(command[1], *command[2:])
    steps = {step_name(line): line[1:].split("] ", 1)[1] for line in lines[1:]}
    for step in ("extract text", "prepare"):  # as the runner runs a step: its command line, by bash
        proc = subprocess.run(["bash", "-c", steps[step]], capture_output=True, text=True, env=real_run_env,
                              cwd=toydata.REPO)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_extracted_text(name, tmp_path / "run")
    assert (tmp_path / "run" / "data" / "bin" / "dict.en.txt").exists()
    wmt = dry_run(*paper_recipe_command("wmt14_en_de", tmp_path / "wmt")[1:])
    assert [step_name(line) for line in lines[1:]] == [step_name(line) for line in wmt[1:] if "2x300" not in line]
    parsed = parse_commands("\n".join(lines))
    # the report's rows: the evaluations' JSONs, in the order of their file names
    evals = sorted((a for a in parsed if hasattr(a, "speed_sentences")), key=lambda a: os.path.basename(a.json))
    assert len(evals) == 8 and evals[0].name == "Teacher 1x32"
    (report,) = [a for a in parsed if hasattr(a, "runs")]
    assert report.teacher == "Teacher 1x32" and len({os.path.dirname(a.json) for a in evals}) == 1


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
@pytest.mark.parametrize("gpus", ["0", "4"])
def test_paper_recipe_commands_parse(name, gpus, tmp_path):
    run = os.path.join(toydata.REPO, "examples", name, "run.sh")
    proc = subprocess.run(["bash", run, "--corpus-dir", str(tmp_path / "c"), "--workdir", str(tmp_path / "w"),
                           "--gpus", gpus, "--dry-run", "--download"], capture_output=True, text=True,
                          cwd=toydata.REPO)
    assert proc.returncode == 0, proc.stderr
    parsed = parse_commands(proc.stdout)
    trainings = [a for a in parsed if hasattr(a, "arch")]
    teacher = trainings[0]
    assert teacher.arch == ("luong_lstm_4x1000" if "wmt" in name else "luong_lstm_2x500")
    assert teacher.optimizer == "sgd" and teacher.lr == [1.0] and teacher.max_epoch == 13 and teacher.dropout == 0.3
    assert teacher.clip_norm == 5 and teacher.batch_size == 64 and teacher.force_anneal == 9 and teacher.lr_shrink == 0.5
    assert teacher.distributed_world_size == (4 if gpus == "4" else 1)
    inter = [a for a in parsed if getattr(a, "select", None) == "seq-inter"]
    assert inter and all(a.nbest == a.beam == 35 for a in inter)
    distills = [a for a in parsed if hasattr(a, "engine") and hasattr(a, "stop_after_batches") and not a.merge]
    # on a GPU the fairseq engine (our decoder's GPU speed is not measured); on the CPU our exact LSTM decoder
    assert distills and all(a.engine == ("fairseq" if gpus == "4" else "seqkd") for a in distills)
    if gpus == "4":
        assert sorted(a.shard_id for a in parsed if getattr(a, "num_shards", 1) == 4 and not a.merge) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert os.listdir(tmp_path) == []


def test_paper_recipe_takes_any_architecture(tmp_path):
    """--teacher-arch/--student-arch/--*-args in the paper recipes; WMT14's 2x300 student gets the students'
    options, and is left out with another student architecture (its options would not fit an LSTM)."""
    run = os.path.join(toydata.REPO, "examples", "wmt14_en_de", "run.sh")
    argv = ["--corpus-dir", str(tmp_path / "c"), "--workdir", str(tmp_path / "w")]
    lines = dry_run(run, *argv, "--teacher-arch", "transformer_wmt_en_de", "--student-arch", "transformer_student_tiny",
                    "--student-args", "--share-decoder-input-output-embed")
    assert lines[0].endswith("--engine ctranslate2 (default for a Transformer teacher)")
    models = trainings(parse_commands("\n".join(lines)))
    assert models.pop("teacher").arch == "transformer_wmt_en_de" and not any("2x300" in n for n in models)
    assert all(a.arch == "transformer_student_tiny" and a.share_decoder_input_output_embed for a in models.values())
    assert all(a.optimizer == "sgd" and a.max_epoch in (13, 3) for a in models.values())  # the paper's schedule
    models = trainings(parse_commands("\n".join(dry_run(run, *argv, "--student-args", "--dropout 0.2"))))
    assert [models[n].arch for n in sorted(models) if "2x300" in n] == ["luong_lstm_2x300"] * 2
    assert models["teacher"].dropout == 0.3 and all(a.dropout == 0.2 for n, a in models.items() if n != "teacher")
    assert os.listdir(tmp_path) == []


def test_paper_recipe_with_multi_on_four_gpus(tmp_path):
    run = os.path.join(toydata.REPO, "examples", "wmt14_en_de", "run.sh")
    argv = ["--corpus-dir", str(tmp_path / "c"), "--workdir", str(tmp_path / "w"), "--gpus", "4"]
    plain = dry_run(run, *argv)
    added = added_steps(plain, dry_run(run, *argv, "--with-multi"))
    shards = [f"train.nbest data (shard {i}/4)" for i in range(1, 5)]
    assert [step_name(line) for line in added] == shards + MULTI_STEPS
    parsed = parse_commands("\n".join(added))
    decodes, (merge, select, nbest, mbr, *evals) = parsed[:4], parsed[4:]
    assert [a.shard_id for a in decodes] == [0, 1, 2, 3] and all(a.num_shards == 4 for a in decodes)
    assert all((a.beam, a.nbest, a.select, a.keep, a.write_kbest, a.engine) == (8, 8, "top-n", 5, True, "fairseq")
               for a in decodes)
    assert merge.merge and merge.binarize == str(tmp_path / "w" / "data-nbest")
    assert select.input == merge.out_prefix + ".kbest" and (select.mode, select.keep) == ("mbr", 5)
    (seqkd,) = [a for a in parse_commands("\n".join(plain)) if getattr(a, "save_dir", "").endswith("/seq-kd")]
    assert seqkd.arch == "luong_lstm_2x500" and seqkd.max_epoch == 13 and seqkd.force_anneal == 9
    for student in (nbest, mbr):
        check_same_schedule(student, seqkd)
        assert student.distributed_world_size == 4
    assert [e.name for e in evals] == ["Seq-KD n-best (n=5)", "Seq-KD MBR-5"]
    assert os.listdir(tmp_path) == []


def test_a_failing_step_names_its_log_and_stops(study, corpus, real_run_env):
    """(Runs last: it breaks the study's seed-2 Seq-KD student.)"""
    workdir, _ = study
    run = workdir / "seed-2"
    (run / "eval" / "04-seq-kd.json").unlink()
    (run / "models" / "seq-kd" / "checkpoint_last.pt").write_bytes(b"not a checkpoint")
    proc = run_recipe(workdir, corpus, real_run_env, "--seeds", "1", "2")
    assert proc.returncode == 1
    assert "seed 2: eval seq-kd: FAILED after" in proc.stdout
    log = run / "logs" / "eval-seq-kd.log"
    assert proc.stderr.strip().splitlines()[-1] == f"error: step 'seed 2: eval seq-kd' failed; its log: {log}"
    assert "error: " in log.read_text() and not (run / "eval" / "04-seq-kd.json").exists()
    assert "report over 2 seeds" not in proc.stdout


def test_study_runs_differ_only_by_seed(tmp_path):
    proc = subprocess.run(["bash", RUN, "--preset", "demo", "--workdir", str(tmp_path), "--seeds", "3", "4",
                           "--dry-run"], capture_output=True, text=True, cwd=toydata.REPO)
    assert proc.returncode == 0, proc.stderr
    steps = {}
    for line in proc.stdout.splitlines()[1:]:  # after the engine's line
        name, command = line[1:].split("] ", 1)
        steps[name] = command
    assert len(steps) == 1 + 2 * 23 + 1 and "prepare" in steps and "report over 2 seeds" in steps
    for name in [n for n in steps if n.startswith("seed 3: ")]:
        other = steps["seed 4: " + name[len("seed 3: "):]]
        same = steps[name].replace("seed-3", "seed-4").replace("--seed 3 ", "--seed 4 ").replace("seed\\ 3", "seed\\ 4")
        assert same == other, name
    assert "--runs " + str(tmp_path / "seed-3") + " " + str(tmp_path / "seed-4") in steps["report over 2 seeds"]
    for name in ("report over 2 seeds", "seed 3: report"):
        assert "--teacher Teacher\\ 1x256 --baseline Baseline\\ 1x128 " in steps[name]
    assert os.listdir(tmp_path) == []


def train_once(data, save_dir, seed):
    toydata.run_cli(["fairseq-train", data, "--user-dir", toydata.USER_DIR, *toydata.TINY_TRAIN_ARGS, "--cpu",
                     "--seed", str(seed), "--max-epoch", "1", "--save-dir", str(save_dir)],
                    env={"OMP_NUM_THREADS": "1"})
    return torch.load(save_dir / "checkpoint_last.pt", weights_only=False)["model"]


def test_the_seed_sets_initialisation_and_data_order(toy_data, tmp_path):
    """Same seed, same checkpoint (bit for bit); another seed, another one; and another batch order."""
    from fairseq_seqkd.generation import load_split

    with ThreadPoolExecutor(2) as pool:  # fresh processes of one thread each, two at a time
        first, again, other = pool.map(lambda run: train_once(toy_data, tmp_path / run[0], run[1]),
                                       (("a", 1), ("b", 1), ("c", 2)))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not any(torch.equal(first[k], other[k]) for k in first if first[k].dim() == 2)
    task = load_split(toy_data, "train")

    def order(seed):
        batches = task.get_batch_iterator(task.dataset("train"), max_tokens=400, seed=seed,
                                          disable_iterator_cache=True)
        return [b["id"].tolist() for b in batches.next_epoch_itr(shuffle=True)]

    assert order(1) == order(1) and order(1) != order(2)
    assert sorted(sum(order(1), [])) == sorted(sum(order(2), [])) == list(range(1500))


def engine_choice(arch, gpus="0", python="python3", *options):
    """choose_engine's choice for a preset's teacher ARCH: (ENGINE, ENGINE_WHY)."""
    script = (f'source "{toydata.REPO}/examples/pipeline.sh"; PYTHON={python}; recipe_options {" ".join(options)} '
              f'--gpus {gpus}; TEACHER_ARCH={arch}; choose_engine; echo "$ENGINE"; echo "$ENGINE_WHY"')
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PATH=toydata.VENV_BIN + os.pathsep + os.environ["PATH"]))
    assert proc.returncode == 0, proc.stderr
    return tuple(proc.stdout.splitlines())


def test_recipes_pick_the_fastest_exact_engine_for_their_teacher(tmp_path):
    # without ctranslate2 (an interpreter that cannot import it): fairseq, saying what to install
    no_ct2 = tmp_path / "python3"
    no_ct2.write_text('#!/bin/sh\ncase "$*" in *ctranslate2*) exit 1 ;; esac\nexec python3 "$@"\n')
    no_ct2.chmod(0o755)
    calls = {  # each a bash that imports fairseq (seconds): two at a time
        "lstm": ("luong_lstm_4x1000",), "lstm gpu": ("lstm_wiseman_iwslt_de_en", "1"),
        "transformer": ("transformer_wmt_en_de",), "no ct2": ("transformer", "0", str(no_ct2)),
        "fconv": ("fconv_iwslt_de_en",), "iwslt transformer": ("transformer_iwslt_de_en",),
        "our transformer": ("transformer_student_tiny",), "lstm of another name": ("lstm_luong_wmt_en_de",),
        "--engine": ("luong_lstm_2x500", "0", "python3", "--engine", "fairseq")}
    with ThreadPoolExecutor(2) as pool:
        choice = dict(zip(calls, pool.map(lambda args: engine_choice(*args), calls.values())))
    assert choice["lstm"][0] == "seqkd"
    assert choice["lstm gpu"][0] == "fairseq"
    assert choice["transformer"] == ("ctranslate2", "default for a Transformer teacher")
    assert choice["no ct2"] == ("fairseq", "ctranslate2 is not installed: pip install ctranslate2")
    assert choice["fconv"] == ("fairseq", "default for a fconv_iwslt_de_en teacher (fconv model)")
    # by the teacher's fairseq model, whatever the architecture's name: fairseq's and ours
    assert choice["iwslt transformer"][0] == choice["our transformer"][0] == "ctranslate2"
    assert choice["lstm of another name"][0] == "seqkd"
    # --engine wins over the default
    assert choice["--engine"] == ("fairseq", "--engine")

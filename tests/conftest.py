"""Session fixtures: one toy corpus, binarized once, and tiny models trained on it (a 1x32 Luong LSTM and a
1-layer Transformer); the same corpus in SentencePiece subwords and a model trained on that; the real recipe runs
(tests/recipe_runs.py), started in the background as soon as the selected tests are known to need them."""

import os

import pytest
import recipe_runs
import toydata
import torch

#: Fixtures of tests/test_recipe.py that wait for a real recipe run: the runs they need.
RUNS_OF_FIXTURE = {"study": ("study",), "wmt14_en_de_run": ("wmt14_en_de",)}


def pytest_configure(config):
    """One torch thread per process (unless OMP_NUM_THREADS says otherwise), here and in the commands the tests
    start: the toy models gain nothing from a second thread, and the suite runs processes side by side (pytest
    workers, the background recipe runs), where threads that wait for each other's cores cost 20-50x."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def session_runs(config):
    """The session's recipe_runs.Runs (made at the first need)."""
    if getattr(config, "_seqkd_recipe_runs", None) is None:
        factory = config._tmp_path_factory
        # pytest-xdist's workers each have a folder of their own in the session's: the runs go in the session's
        root = factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else factory.getbasetemp()
        config._seqkd_recipe_runs = recipe_runs.Runs(factory.mktemp, root)
    return config._seqkd_recipe_runs


def pytest_collection_finish(session):
    """Start the background runs that the selected tests need (by their fixtures, RUNS_OF_FIXTURE, or their
    marker ``background(name)``) now: they run beside the tests before them."""
    if session.config.option.collectonly:
        return
    needed = []
    for item in session.items:
        names = [name for fixture in getattr(item, "fixturenames", ()) for name in RUNS_OF_FIXTURE.get(fixture, ())]
        names += [mark.args[0] for mark in item.iter_markers("background")]
        needed += [name for name in names if name not in needed]
    for name in needed:
        session_runs(session.config).start(name)


def pytest_sessionfinish(session, exitstatus):
    """Stop the background runs; a pytest-xdist worker whose tests ended normally first lets its runs end (the
    other workers' tests may wait for them)."""
    runs = getattr(session.config, "_seqkd_recipe_runs", None)
    if runs is not None:
        interrupted = session.shouldstop or session.shouldfail or exitstatus == pytest.ExitCode.INTERRUPTED
        runs.finish(others_may_wait=bool(os.environ.get("PYTEST_XDIST_WORKER")) and not interrupted)


@pytest.fixture(scope="session")
def recipe_run(pytestconfig):
    """The session's real recipe runs (recipe_runs.Runs): ``recipe_run.wait("study")`` -> (folder, process)."""
    return session_runs(pytestconfig)


@pytest.fixture(scope="session")
def toy_text(tmp_path_factory):
    """Folder with {train,valid,test}.{src,tgt} of the toy language pair."""
    return toydata.write_toy_corpus(str(tmp_path_factory.mktemp("toy_text")))


@pytest.fixture(scope="session")
def toy_data(toy_text, tmp_path_factory):
    """fairseq binary data of the toy corpus (the DATA argument of fairseq's CLIs)."""
    return toydata.preprocess(toy_text, str(tmp_path_factory.mktemp("toy_bin")))


@pytest.fixture(scope="session")
def toy_model(toy_data, tmp_path_factory):
    """Path of a 1x32 Luong LSTM trained on the toy data (a few seconds of training)."""
    save_dir = str(tmp_path_factory.mktemp("toy_model"))
    path = toydata.train(toy_data, save_dir)
    assert os.path.exists(path)
    return path


@pytest.fixture(scope="session")
def other_vocab_data(tmp_path_factory):
    """Toy data whose target dictionary has the same size as toy_data's but other symbols."""
    folder = tmp_path_factory.mktemp("other_text")
    toydata.write_toy_corpus(str(folder))
    for name in os.listdir(folder):
        if name.endswith(".tgt"):
            path = folder / name
            path.write_text(path.read_text().replace("t", "u"))
    return toydata.preprocess(str(folder), str(tmp_path_factory.mktemp("other_bin")))


@pytest.fixture(scope="session")
def transformer_model(toy_data, tmp_path_factory):
    """Path of a tiny fairseq `transformer` (1 layer, 32 units) trained briefly on the toy data: the kind of
    teacher (and student) most fairseq users have."""
    save_dir = str(tmp_path_factory.mktemp("transformer_model"))
    return toydata.train(toy_data, save_dir, toydata.TINY_TRANSFORMER_ARGS, max_epoch=4)


@pytest.fixture(scope="session")
def spm_corpus(toy_text, tmp_path_factory):
    """The toy corpus prepared by seqkd-prepare's library: real SentencePiece models that split the toy words
    ("s12" -> "▁s 12"), raw text references and fairseq binary data (``bin``)."""
    from fairseq_seqkd.prepare import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("spm_corpus")
    files = {f"{split}_{side}": os.path.join(toy_text, f"{split}.{side}") for split in ("train", "valid", "test")
             for side in ("src", "tgt")}
    prepare(PrepareOptions(src_file=files["train_src"], tgt_file=files["train_tgt"], src_lang="src", tgt_lang="tgt",
                           out=str(out), valid_src=files["valid_src"], valid_tgt=files["valid_tgt"],
                           test_src=files["test_src"], test_tgt=files["test_tgt"], vocab_size=16))
    return out


@pytest.fixture(scope="session")
def spm_model(spm_corpus, tmp_path_factory):
    """Path of a 1x32 Luong LSTM trained a few epochs on the SentencePiece toy data."""
    return toydata.train(str(spm_corpus / "bin"), str(tmp_path_factory.mktemp("spm_model")), max_epoch=5)

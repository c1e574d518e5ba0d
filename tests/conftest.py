"""Session fixtures: one toy corpus, binarized once, and one tiny model trained on it."""

import os

import pytest
import toydata


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

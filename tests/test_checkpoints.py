"""Loading fairseq checkpoints (fairseq_seqkd.checkpoints): dictionaries checked symbol by symbol, or by size
when the checkpoint's data folder is gone; one-line errors; saving back."""

import logging

import pytest
import torch

from fairseq_seqkd.checkpoints import check_dictionaries, load_checkpoint_state, load_model, save_checkpoint
from fairseq_seqkd.errors import SeqKDError
from fairseq_seqkd.generation import load_split


def moved(state, tmp_path):
    """The checkpoint as it is once its training data folder is gone."""
    state["cfg"].task.data = str(tmp_path / "gone")
    return state


def test_dictionaries_are_checked_by_size_when_the_data_folder_is_gone(toy_data, other_vocab_data, toy_model,
                                                                       tmp_path, caplog):
    task, other = load_split(toy_data, "test"), load_split(other_vocab_data, "test")
    state = load_checkpoint_state(toy_model)
    with pytest.raises(SeqKDError, match="differs from the student's .*first difference at index 4"):
        check_dictionaries(toy_model, state, other)  # symbol by symbol while the folder is there
    state = moved(state, tmp_path)
    caplog.set_level(logging.WARNING)
    check_dictionaries(toy_model, state, task)
    assert "only its size (24) could be checked" in caplog.text
    check_dictionaries(toy_model, state, other)  # same size, other symbols: all a size check can see
    state["model"]["decoder.embed_tokens.weight"] = torch.zeros(25, 32)
    with pytest.raises(SeqKDError, match=r"^teacher .*: its target dictionary has 25 symbols "
                                         r"\(decoder.embed_tokens.weight\), the student's .*dict.tgt.txt has 24$"):
        check_dictionaries(toy_model, state, task)
    with pytest.raises(SeqKDError, match=r"^model .*, the data's .*dict.tgt.txt has 24$"):
        check_dictionaries(toy_model, state, task, what="model")


def test_load_model_and_save_checkpoint_round_trip(toy_data, toy_model, tmp_path):
    task = load_split(toy_data, "test")
    model = load_model(toy_model, task)
    assert not model.training
    state = load_checkpoint_state(toy_model)  # cfg comes back as an OmegaConf object
    path = str(tmp_path / "copy.pt")
    save_checkpoint(state, path)
    again = torch.load(path)  # torch's safe loading (weights_only) accepts it: cfg is plain containers now
    assert isinstance(again["cfg"], dict)
    copy = load_model(path, task)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.state_dict().values()))
    for bad, message in ((tmp_path / "none.pt", "checkpoint .*none.pt: no such file"),
                         (tmp_path / "text.pt", r"checkpoint .*text.pt: not a fairseq checkpoint \(\w+\)$")):
        if bad.name == "text.pt":
            bad.write_text("hello\n")
        with pytest.raises(SeqKDError, match=message):
            load_checkpoint_state(str(bad))

"""Magnitude pruning: exact masks, the mask's checkpoint contract, masks held fixed while training, sparse
export, bad inputs."""

import os

import pytest
import torch

import toydata
from fairseq_seqkd import pruning
from fairseq_seqkd.cli.prune import main as prune_main
from fairseq_seqkd.errors import SeqKDError


def fake_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    q = lambda *shape: (torch.randint(-20, 21, shape, generator=g) / 10.0)  # many ties, some zeros
    return {"encoder.embed_tokens.weight": q(12, 6), "encoder.lstm.weight_ih_l0": q(24, 6),
            "encoder.lstm.bias_ih_l0": q(24), "decoder.fc_out.weight": q(12, 6), "decoder.fc_out.bias": q(12)}


def oracle_blind(state, ratio, names):
    """Pruned positions by a stable sort on (magnitude, position) over the concatenation."""
    flat = [(abs(float(v)), pos, name, i) for pos, (name, i, v) in enumerate(
        (name, i, v) for name in names for i, v in enumerate(state[name].flatten().tolist()))]
    flat.sort(key=lambda x: (x[0], x[1]))
    return {(name, i) for _, _, name, i in flat[:round(ratio * len(flat))]}


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.8, 0.9, 0.999])
@pytest.mark.parametrize("scope", ["all", "no-embeddings"])
def test_class_blind_prunes_exactly_the_smallest(ratio, scope):
    state = fake_state()
    masks = pruning.magnitude_masks(state, ratio, "class-blind", scope)
    names = [n for n in state if state[n].dim() >= 2 and (scope == "all" or "embed" not in n)]
    assert list(masks) == names  # biases (and embeddings out of scope) untouched
    expected = oracle_blind(state, ratio, names)
    got = {(name, i) for name in names for i, keep in enumerate(masks[name].flatten().tolist()) if not keep}
    assert got == expected and len(got) == round(ratio * sum(state[n].numel() for n in names))


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.85])
def test_class_uniform_prunes_the_same_fraction_of_each_tensor(ratio):
    state = fake_state(1)
    masks = pruning.magnitude_masks(state, ratio, "class-uniform")
    for name, mask in masks.items():
        assert int((~mask).sum()) == round(ratio * mask.numel())
        expected = oracle_blind({name: state[name]}, ratio, [name])
        assert {(name, i) for i, k in enumerate(mask.flatten().tolist()) if not k} == expected


def test_pack_roundtrip():
    for n in (1, 7, 8, 9, 1000):
        mask = torch.rand(n, 3) > 0.4
        assert torch.equal(pruning.unpack(pruning.pack(mask)), mask)


def prunable_zeros(model_state):
    weights = pruning.prunable(model_state)
    return {n: t == 0 for n, t in weights.items()}, sum(t.numel() for t in weights.values())


@pytest.fixture(scope="module")
def pruned(toy_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pruned")
    out, sparse = str(folder / "pruned.pt"), str(folder / "sparse.pt")
    pruning.prune_checkpoint(toy_model, out, 0.8, export_sparse=sparse)
    return out, sparse


def test_seqkd_prune_checkpoint(pruned, toy_model):
    out, _ = pruned
    state = torch.load(out, weights_only=False)
    zeros, n = prunable_zeros(state["model"])
    assert sum(int(z.sum()) for z in zeros.values()) == round(0.8 * n)
    original = torch.load(toy_model, weights_only=False)["model"]
    for name, t in state["model"].items():
        if name not in zeros:
            assert torch.equal(t, original[name])  # biases untouched
        else:
            assert torch.equal(t[~zeros[name]], original[name][~zeros[name]])  # kept weights unchanged
    packed = state["extra_state"]["SeqKDTranslationTask"]["prune_masks"]
    assert all(torch.equal(pruning.unpack(packed[name]), ~zeros[name]) for name in zeros)
    masks = pruning.read_masks(out)
    assert sorted(masks) == sorted(zeros) and all(torch.equal(masks[n], ~zeros[n]) for n in zeros)
    assert pruning.read_masks(toy_model) is None  # an ordinary checkpoint carries no mask


def test_the_mask_key_is_where_fairseq_keeps_the_tasks_checkpoint_dict():
    from fairseq_seqkd.tasks.seqkd_translation import SeqKDTranslationTask

    assert pruning.TASK_STATE_KEY == SeqKDTranslationTask.__name__  # fairseq keys it by the task's class name


def test_masks_that_do_not_fit_the_model_are_refused():
    params = {"a.weight": torch.zeros(3, 4)}
    pruning.check_masks({"a.weight": torch.ones(3, 4, dtype=torch.bool)}, params, "x.pt")
    with pytest.raises(SeqKDError, match=r"x.pt: the pruning mask of a.weight has shape \(4, 3\), the weight \(3, 4\)"):
        pruning.check_masks({"a.weight": torch.ones(4, 3, dtype=torch.bool)}, params, "x.pt")
    with pytest.raises(SeqKDError, match="x.pt: a pruning mask for b.weight, which the model does not have"):
        pruning.check_masks({"b.weight": torch.ones(1, dtype=torch.bool)}, params, "x.pt")


def test_generate_loads_the_pruned_checkpoint(pruned, toy_data):
    out = toydata.generate(toy_data, pruned[0], ["--beam", "2"])
    assert len(toydata.hypotheses(out)) == 100


def test_sparse_export_roundtrips_bit_for_bit(pruned, tmp_path):
    out, sparse = pruned
    dense = str(tmp_path / "dense.pt")
    prune_main([sparse, dense, "--densify"])
    a, b = torch.load(out, weights_only=False)["model"], torch.load(dense, weights_only=False)["model"]
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    weights_bytes = sum(t.numel() * t.element_size() for t in a.values())
    assert os.path.getsize(sparse) < 0.6 * weights_bytes + 20000  # 20% kept: values + int32 indices


def held_zeros_after_training(toy_data, start, save_dir, *extra, epochs=1):
    toydata.train(toy_data, save_dir, [*extra], max_epoch=epochs)
    return torch.load(os.path.join(save_dir, "checkpoint_last.pt"), weights_only=False)


@pytest.mark.parametrize("extra", [[], ["--update-freq", "2"], ["--memory-efficient-fp16", "--cpu"]],
                         ids=["adam", "grad-accumulation", "fp16"])
def test_pruned_weights_stay_zero_while_retraining(pruned, toy_data, tmp_path, extra):
    before = torch.load(pruned[0], weights_only=False)["model"]
    mask_zero, _ = prunable_zeros(before)
    state = held_zeros_after_training(toy_data, pruned[0], str(tmp_path / "retrain"),
                                      "--finetune-from-model", pruned[0], *extra)
    after_zero, _ = prunable_zeros(state["model"])
    for name in mask_zero:
        assert torch.equal(after_zero[name], mask_zero[name]), name  # exactly the mask: zeros held, others trained
    changed = sum(int((state["model"][n] != before[n]).sum()) for n in mask_zero)
    assert changed > 0.9 * sum(int((~z).sum()) for z in mask_zero.values())
    packed = state["extra_state"]["SeqKDTranslationTask"]["prune_masks"]
    assert all(torch.equal(pruning.unpack(packed[n]), ~mask_zero[n]) for n in mask_zero)


def test_restore_with_old_optimizer_state_and_resume_keep_the_mask(pruned, toy_data, tmp_path):
    """--restore-file keeps the pre-pruning Adam moments (non-zero for pruned weights); zeros still hold.
    Then a resumed run (masks from the checkpoint) keeps them too."""
    save_dir = str(tmp_path / "restore")
    mask_zero, _ = prunable_zeros(torch.load(pruned[0], weights_only=False)["model"])
    state = held_zeros_after_training(toy_data, pruned[0], save_dir, "--restore-file", pruned[0],
                                      "--reset-dataloader", epochs=2)  # epochs 1-2: the data loader is reset
    assert all(torch.equal(prunable_zeros(state["model"])[0][n], mask_zero[n]) for n in mask_zero)
    state = held_zeros_after_training(toy_data, None, save_dir, epochs=3)  # resumes checkpoint_last.pt
    assert state["extra_state"]["train_iterator"]["epoch"] == 4  # epoch 3 ran, from the resumed checkpoint
    assert all(torch.equal(prunable_zeros(state["model"])[0][n], mask_zero[n]) for n in mask_zero)


def test_prune_ratio_option_prunes_when_training_starts(toy_model, toy_data, tmp_path):
    state = held_zeros_after_training(toy_data, toy_model, str(tmp_path / "pr"), "--finetune-from-model", toy_model,
                                      "--prune-ratio", "0.5", "--prune-scheme", "class-uniform", epochs=2)
    expected = pruning.magnitude_masks(torch.load(toy_model, weights_only=False)["model"], 0.5, "class-uniform")
    zeros, _ = prunable_zeros(state["model"])
    assert all(torch.equal(zeros[n], ~expected[n]) for n in expected)


def test_report_counts(pruned, capsys):
    prune_main([pruned[0], "--report"])
    out = capsys.readouterr().out.splitlines()
    state = torch.load(pruned[0], weights_only=False)["model"]
    total = sum(t.numel() for t in state.values())
    nonzero = sum(int(t.count_nonzero()) for t in state.values())
    assert out[-1].split()[:3] == ["total", f"{total:,d}", f"{nonzero:,d}"]
    emb = [line for line in out if line.startswith("embeddings")][0].split()
    assert int(emb[1].replace(",", "")) == sum(t.numel() for n, t in state.items() if "embed_tokens" in n)


def test_bad_inputs(toy_model, tmp_path):
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_text("hello")
    out = str(tmp_path / "out.pt")
    cases = [
        ([toy_model, out, "--ratio", "1.0"], r"--ratio 1.0: must be in \[0, 1\)"),
        ([toy_model, out, "--ratio", "-0.1"], r"--ratio -0.1"),
        ([str(tmp_path / "missing.pt"), out, "--ratio", "0.5"], "missing.pt: no such file"),
        ([str(not_ckpt), out, "--ratio", "0.5"], "x.pt: not a fairseq checkpoint"),
        ([toy_model, toy_model, "--ratio", "0.5"], "the output must not be the input"),
    ]
    for argv, message in cases:
        with pytest.raises(SeqKDError, match=message):
            prune_main(argv)
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]
    proc = toydata.run_cli(["seqkd-prune", toy_model, out, "--ratio", "1.5"], check=False)
    toydata.assert_one_line_error(proc, "--ratio 1.5: must be in [0, 1)")
    assert sorted(os.listdir(tmp_path)) == ["x.pt"]


def test_exact_zeros_that_are_not_in_the_mask_are_trained(pruned, toy_model, toy_data, tmp_path):
    """The task holds the mask seqkd-prune wrote, nothing else: a checkpoint's other exact zeros (here 10% of
    the kept weights, set to zero by hand) train like any weight; an ordinary model full of zeros is not
    frozen either."""
    state = torch.load(pruned[0], weights_only=False)
    mask_zero, _ = prunable_zeros(state["model"])
    extra = {}
    for name, zero in mask_zero.items():
        kept = (~zero).flatten().nonzero().flatten()
        extra[name] = kept[::10]
        state["model"][name].view(-1)[extra[name]] = 0
    with_zeros = str(tmp_path / "more-zeros.pt")
    torch.save(state, with_zeros)
    after = held_zeros_after_training(toy_data, with_zeros, str(tmp_path / "a"), "--finetune-from-model", with_zeros,
                                      epochs=1)
    after_zero, _ = prunable_zeros(after["model"])
    assert all(torch.equal(after_zero[n] & mask_zero[n], mask_zero[n]) for n in mask_zero)  # the mask holds
    assert sum(int((~after_zero[n].view(-1)[extra[n]]).sum()) for n in extra) > 0.9 * sum(map(len, extra.values()))
    packed = after["extra_state"]["SeqKDTranslationTask"]["prune_masks"]
    assert all(torch.equal(pruning.unpack(packed[n]), ~mask_zero[n]) for n in mask_zero)
    # the same zeros in a checkpoint without a mask: nothing is held
    del state["extra_state"]["SeqKDTranslationTask"]
    plain = str(tmp_path / "zeros.pt")
    torch.save(state, plain)
    after = held_zeros_after_training(toy_data, plain, str(tmp_path / "b"), "--finetune-from-model", plain, epochs=1)
    zeros_after, _ = prunable_zeros(after["model"])
    assert sum(int(z.sum()) for z in zeros_after.values()) < 0.05 * sum(int(z.sum()) for z in mask_zero.values())
    assert "SeqKDTranslationTask" not in after["extra_state"]


def test_bad_prune_ratio_under_fairseq_train_is_one_line_error(toy_data, tmp_path):
    with pytest.raises(SystemExit, match=r"^error: --prune-ratio 1.5: must be in \[0, 1\)$"):
        toydata.train(toy_data, str(tmp_path / "x"), ["--prune-ratio", "1.5"], max_epoch=1)
    assert not os.path.exists(tmp_path / "x" / "checkpoint_last.pt")


# -- tied (shared) embeddings: one parameter, pruned once ------------------------------------------------------

TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")
TIED_ARGS = [*toydata.TINY_TRANSFORMER_ARGS, "--share-all-embeddings"]


@pytest.fixture(scope="module")
def tied_transformer(toy_text, tmp_path_factory):
    """(data, checkpoint) of a tiny transformer with every embedding shared, on the toy corpus binarized with one
    joined dictionary (--share-all-embeddings needs it): one table under the three names of TIED."""
    data = toydata.preprocess(toy_text, str(tmp_path_factory.mktemp("joined_bin")), extra=["--joined-dictionary"])
    path = toydata.train(data, str(tmp_path_factory.mktemp("tied_transformer")), TIED_ARGS, max_epoch=1)
    return data, path


def unique_prunable(model_state):
    """The prunable tensors of a tied transformer's state dict counted once (the aliases of the shared table
    dropped by name: independent of pruning.py's alias detection)."""
    return {n: t for n, t in pruning.prunable(model_state).items() if n not in TIED[1:]}


def test_tied_embeddings_are_pruned_once_and_stay_zero_while_retraining(tied_transformer, tmp_path):
    data, model = tied_transformer
    original = torch.load(model, weights_only=False)["model"]
    assert all(torch.equal(original[n], original[TIED[0]]) for n in TIED)  # one shared table, saved three times
    unique = unique_prunable(original)
    out, ratio = str(tmp_path / "pruned.pt"), 0.5
    prune_main([model, out, "--ratio", str(ratio)])
    state = torch.load(out, weights_only=False)
    # one mask per parameter, under the name named_parameters() gives it; exactly the class-blind oracle over the
    # unique tensors (the shared table ranked once)
    masks = pruning.read_masks(out)
    assert sorted(masks) == sorted(unique)
    expected = oracle_blind(unique, ratio, list(unique))
    got = {(n, i) for n, m in masks.items() for i, keep in enumerate(m.flatten().tolist()) if not keep}
    n_unique = sum(t.numel() for t in unique.values())
    assert got == expected and len(got) == round(ratio * n_unique)
    # every alias holds the same pruned table; the actual zeros are the ratio of the unique weights
    assert all(torch.equal(state["model"][n], state["model"][TIED[0]]) for n in TIED)
    zeros = sum(int((state["model"][n] == 0).sum()) for n in unique)
    assert abs(zeros - round(ratio * n_unique)) <= len(unique)
    for name, mask in masks.items():
        assert bool((state["model"][name][~mask] == 0).all()), name
        assert torch.equal(state["model"][name][mask], original[name][mask])  # kept weights unchanged
    # 3 updates with the mask held: the pruned entries stay zero in every alias, the aliases stay one table
    save_dir = str(tmp_path / "retrain")
    toydata.train(data, save_dir, [*TIED_ARGS, "--finetune-from-model", out, "--max-update", "3"], max_epoch=1)
    after = torch.load(os.path.join(save_dir, "checkpoint_last.pt"), weights_only=False)
    for name, mask in masks.items():
        assert bool((after["model"][name][~mask] == 0).all()), name
    assert all(torch.equal(after["model"][n], after["model"][TIED[0]]) for n in TIED)
    shared_mask = masks[TIED[0]]
    assert all(bool((after["model"][n][~shared_mask] == 0).all()) for n in TIED)
    changed = sum(int((after["model"][n] != state["model"][n]).sum()) for n in unique)
    assert changed > 0.5 * sum(int(m.sum()) for m in masks.values())  # the kept weights trained
    packed = after["extra_state"]["SeqKDTranslationTask"]["prune_masks"]
    assert sorted(packed) == sorted(masks) and all(torch.equal(pruning.unpack(packed[n]), masks[n]) for n in masks)


def test_tied_entries_saved_as_separate_copies_are_still_one_parameter(tied_transformer, tmp_path):
    """A checkpoint saved from a GPU holds the aliases as separate copies (fairseq moves each entry to the CPU on
    its own): the aliases are learnt from the model, not from shared storage."""
    _, model = tied_transformer
    state = torch.load(model, weights_only=False)
    for name in TIED[1:]:
        state["model"][name] = state["model"][name].clone()
    copies = str(tmp_path / "copies.pt")
    torch.save(state, copies)
    out, sparse, dense = (str(tmp_path / f) for f in ("pruned.pt", "sparse.pt", "dense.pt"))
    pruning.prune_checkpoint(copies, out, 0.8, "class-uniform", export_sparse=sparse)
    masks = pruning.read_masks(out)
    unique = unique_prunable(state["model"])
    assert sorted(masks) == sorted(unique)
    assert all(int((~m).sum()) == round(0.8 * m.numel()) for m in masks.values())
    pruned = torch.load(out, weights_only=False)["model"]
    assert all(torch.equal(pruned[n], pruned[TIED[0]]) for n in TIED)
    assert torch.equal(pruned[TIED[0]] == 0, ~masks[TIED[0]])
    prune_main([sparse, dense, "--densify"])  # the shared table is stored once in the sparse export
    densified = torch.load(dense, weights_only=False)["model"]
    assert list(densified) == list(pruned) and all(torch.equal(densified[k], pruned[k]) for k in pruned)
    assert len({densified[n].data_ptr() for n in TIED}) == 1


def test_report_counts_a_shared_table_once_and_groups_transformer_layers(tied_transformer, capsys):
    _, model = tied_transformer
    prune_main([model, "--report"])
    out = capsys.readouterr().out.splitlines()
    state = torch.load(model, weights_only=False)["model"]
    total = sum(t.numel() for n, t in state.items() if torch.is_floating_point(t) and n not in TIED[1:])
    assert out[-1].split()[:2] == ["total", f"{total:,d}"]
    rows = {line.split()[0] for line in out[1:]}
    assert "LSTM" not in rows and {"embeddings", "encoder", "decoder"} <= rows  # "encoder layers", "decoder layers"
    emb = [line for line in out if line.startswith("embeddings")][0].split()
    assert int(emb[1].replace(",", "")) == state[TIED[0]].numel()


def test_group_labels():
    lstm = {"encoder.embed_tokens.weight": "embeddings", "encoder.lstm.weight_ih_l0": "LSTM",
            "encoder.lstm.bias_hh_l0_reverse": "LSTM", "decoder.layers.0.weight_ih": "LSTM",
            "decoder.layers.1.bias_hh": "LSTM", "decoder.attention.input_proj.weight": "attention",
            "decoder.attention.output_proj.weight": "attention", "decoder.fc_out.weight": "output projection",
            "decoder.additional_fc.weight": "output projection", "decoder.encoder_hidden_proj.weight": "other"}
    transformer = {"encoder.layers.0.self_attn.k_proj.weight": "encoder layers",
                   "encoder.layers.2.fc1.weight": "encoder layers", "encoder.layer_norm.weight": "encoder layers",
                   "decoder.layers.0.encoder_attn.q_proj.weight": "decoder layers",
                   "decoder.layers.0.final_layer_norm.bias": "decoder layers",
                   "decoder.output_projection.weight": "output projection",
                   "decoder.embed_positions.weight": "embeddings", "decoder.embed_tokens.weight": "embeddings"}
    for name, group in {**lstm, **transformer}.items():
        assert pruning.group_of(name) == group, name

"""Loading the plugin lets torch >= 2.6 load fairseq checkpoints, and nothing more."""

import os
import sys

import pytest
import torch

import toydata

TORCH_SAFE_LOAD = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)


def python(code, check=False):
    return toydata.run_cli([sys.executable, "-c", code], check=check)


@pytest.mark.skipif(not TORCH_SAFE_LOAD, reason="torch < 2.6 does not load with weights_only=True by default")
def test_plain_torch_refuses_fairseq_checkpoint(toy_model):
    """The problem we fix is real: without the plugin, torch's default load fails."""
    proc = python(f"import torch; torch.load({toy_model!r})")
    assert proc.returncode != 0
    assert "argparse.Namespace" in proc.stderr


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_plugin_import_makes_default_torch_load_work(toy_model):
    proc = python(f"import fairseq_seqkd, torch; s = torch.load({toy_model!r}); print(sorted(s))", check=True)
    assert "'model'" in proc.stdout and "'cfg'" in proc.stdout


def test_safe_loading_stays_on_for_other_globals(tmp_path):
    """Only fairseq's globals are allowed: an arbitrary class in a pickle is still refused."""
    import datetime

    path = str(tmp_path / "other.pt")
    torch.save({"when": datetime.date(2016, 11, 1)}, path)
    proc = python(f"import fairseq_seqkd, torch; torch.load({path!r})")
    assert proc.returncode != 0 and "datetime.date" in proc.stderr


def test_checkpoint_with_numpy_scalars_loads(toy_model, tmp_path):
    """fairseq keeps best/validation values in extra_state; numpy scalars there must load too."""
    import numpy as np

    state = torch.load(toy_model, weights_only=False)
    state["extra_state"]["best"] = np.float64(1.25)
    state["extra_state"]["val_loss"] = np.float32(2.5)
    path = str(tmp_path / "numpy.pt")
    torch.save(state, path)
    proc = python(f"import fairseq_seqkd, torch; s = torch.load({path!r}); print(float(s['extra_state']['best']))",
                  check=True)
    assert proc.stdout.strip() == "1.25"


@pytest.mark.slow  # a fresh process or a whole corpus: left out by make test-fast
def test_fairseq_generate_loads_checkpoint_without_env_var(toy_model, toy_data, tmp_path):
    """The stock CLI, from another folder, with --user-dir given as the installed package's path."""
    user_dir = python("import runpy; runpy.run_module('fairseq_seqkd', run_name='__main__')", check=True).stdout.strip()
    assert os.path.samefile(user_dir, toydata.USER_DIR)
    proc = toydata.run_cli(["fairseq-generate", toy_data, "--user-dir", user_dir, "--path", toy_model,
                            "--task", "seqkd_translation", "--beam", "2", "--batch-size", "50", "--num-workers", "0"],
                           cwd=str(tmp_path))  # data loader workers would leave a pymp-* folder in TMPDIR
    assert "Generate test with beam=2" in proc.stderr + proc.stdout
    assert len(toydata.hypotheses(proc.stdout)) == 100

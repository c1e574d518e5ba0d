"""Kill it anywhere, run it again, get the same bytes: the fault-injection harness over every stage.

Builds a toy corpus and a tiny teacher, then for each stage (seqkd-prepare, seqkd-distill unsharded,
sharded with merge and --binarize, seqkd-select, seqkd-prune, seqkd-export, seqkd-eval, fairseq-train, and a
whole `--preset tiny` recipe) runs the stage uninterrupted, then again SIGKILLed (its whole process tree) at
seeded random moments, reruns the same command and compares the final outputs byte for byte with the
uninterrupted run (evaluation JSONs: their quality fields, not speeds; binarized folders: every file but
fairseq-preprocess's log). Then SIGTERM and SIGHUP to the recipe runner: no process of the run may survive,
and the rerun must complete. Writes a table (markdown) and every trial (JSON).

    python benchmarks/fault_injection.py [--seed 1] [--kills 24] [--workdir /tmp/faults] [--out DIR]
                                         [--only STAGE ...] [--skip-recipe] [--skip-signals]

The machinery is tests/faultinject.py (its fast cases run in `make test`: tests/test_faults.py).
"""

import argparse
import glob
import json
import os
import random
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

import faultinject  # noqa: E402
import toydata  # noqa: E402


def files(folder, pattern="*"):
    return sorted(glob.glob(os.path.join(folder, pattern)))


def exists_phase(*paths):
    def phase(workdir):
        there = [os.path.relpath(p, workdir) for p in paths if os.path.exists(p)]
        tmp = [os.path.basename(p) for p in files(workdir, "*.tmp") + files(workdir, "*/*.tmp")]
        return (("written: " + ", ".join(there)) if there else "nothing written") + \
            (f"; temporaries: {', '.join(tmp)}" if tmp else "")
    return phase


def build_inputs(base):
    """The toy corpus (text and binarized), a tiny teacher and a tiny student (made anew); returns their paths."""
    shutil.rmtree(base, ignore_errors=True)
    text = toydata.write_toy_corpus(os.path.join(base, "text"), sizes=(("train", 1200), ("valid", 80),
                                                                       ("test", 80)))
    data = toydata.preprocess(text, os.path.join(base, "bin"))
    teacher = toydata.train(data, os.path.join(base, "teacher"), max_epoch=8)
    student = toydata.train(data, os.path.join(base, "student"), ["--arch", "luong_lstm_1x32"], max_epoch=3)
    return {"text": text, "data": data, "teacher": teacher, "student": student}


def stages(work, inp):
    """Every stage of the pipeline as a faultinject.Stage (outputs in their own folder under ``work``)."""
    data, teacher, student, text = inp["data"], inp["teacher"], inp["student"], inp["text"]
    out = {}

    def stage(name, command, outputs, phase=None, setup=None):
        folder = os.path.join(work, name.replace(" ", "-").replace("+", ""))
        command = [c.replace("{W}", folder) for c in command]
        outputs = [o.replace("{W}", folder) for o in outputs]
        out[name] = faultinject.Stage(name, folder, command, outputs,
                                      setup=setup or (lambda w: None),
                                      phase=phase(folder) if phase else (lambda w: ""))

    stage("seqkd-prepare", ["seqkd-prepare", "--src-file", f"{text}/train.src", "--tgt-file", f"{text}/train.tgt",
                            "--src-lang", "src", "--tgt-lang", "tgt", "--out", "{W}/prep", "--valid-size", "60",
                            "--test-size", "60", "--vocab-size", "24", "--workers", "1"],
          ["{W}/prep"], phase=lambda w: exists_phase(f"{w}/prep/raw", f"{w}/prep/spm", f"{w}/prep/tok",
                                                     f"{w}/prep/bin", f"{w}/prep/prepare.json"))
    common = ["--path", teacher, "--cpu", "--batch-size", "8", "--beam", "4", "--nbest", "4", "--select", "seq-inter",
              "--remove-bpe", "none", "--write-kbest", "--max-len-a", "1.2", "--max-len-b", "10"]
    stage("seqkd-distill", ["seqkd-distill", data, *common, "--out-prefix", "{W}/train.kd", "--resume",
                            "--binarize", "{W}/bin"],
          ["{W}/train.kd.src", "{W}/train.kd.tgt", "{W}/train.kd.kbest", "{W}/bin"],
          phase=lambda w: faultinject.distill_phase(f"{w}/train.kd"))
    shards = [f"seqkd-distill {data} {' '.join(common)} --out-prefix {{W}}/train.kd --resume --num-shards 3 "
              f"--shard-id {i}" for i in range(3)]
    merge = "seqkd-distill --merge --out-prefix {W}/train.kd --num-shards 3 --binarize {W}/bin"
    stage("seqkd-distill 3 shards + merge", ["bash", "-c", " && ".join([*shards, merge])],
          ["{W}/train.kd.src", "{W}/train.kd.tgt", "{W}/train.kd.kbest", "{W}/bin"],
          phase=lambda w: faultinject.distill_phase(f"{w}/train.kd"))
    kbest = os.path.join(work, "inputs", "train.kbest")
    stage("seqkd-select", ["seqkd-select", kbest, "--out-src", "{W}/inter.src", "--out-tgt", "{W}/inter.tgt",
                           "--remove-bpe", "none", "--workers", "2"],
          ["{W}/inter.src", "{W}/inter.tgt"], phase=lambda w: exists_phase(f"{w}/inter.src", f"{w}/inter.tgt"))
    stage("seqkd-prune", ["seqkd-prune", student, "{W}/pruned.pt", "--ratio", "0.8", "--export-sparse",
                          "{W}/pruned.sparse.pt"],
          ["{W}/pruned.pt", "{W}/pruned.sparse.pt"],
          phase=lambda w: exists_phase(f"{w}/pruned.pt", f"{w}/pruned.sparse.pt"))
    stage("seqkd-export", ["seqkd-export", student, "--out", "{W}/model", "--data", data, "--quantize", "int8"],
          ["{W}/model"], phase=lambda w: exists_phase(f"{w}/model"))
    stage("seqkd-eval", ["seqkd-eval", data, "--path", student, "--json", "{W}/eval/student.json", "--cpu",
                         "--beam", "4", "--speed-sentences", "5", "--speed-repeats", "1"],
          ["{W}/eval/student.json"], phase=lambda w: exists_phase(f"{w}/eval/student.json"))
    return out


def input_kbest(work, inp):
    """The K-best file seqkd-select reads (seqkd-distill --write-kbest on the toy teacher)."""
    folder = os.path.join(work, "inputs")
    os.makedirs(folder, exist_ok=True)
    code, _ = faultinject.run_to_end(
        ["seqkd-distill", inp["data"], "--path", inp["teacher"], "--cpu", "--batch-size", "64", "--beam", "8",
         "--nbest", "8", "--write-kbest", "--out-prefix", os.path.join(folder, "train")], folder)
    assert code == 0 and os.path.exists(os.path.join(folder, "train.kbest"))


# ---------------------------------------------------------------------------------------------- training
def train_command(data, save_dir, max_epoch):
    return ["fairseq-train", data, "--user-dir", toydata.USER_DIR, "--save-dir", save_dir, *toydata.TINY_TRAIN_ARGS,
            "--max-epoch", str(max_epoch), "--cpu", "--save-interval-updates", "10", "--keep-interval-updates", "1"]


def checkpoint_state(path):
    import torch

    state = torch.load(path, map_location="cpu", weights_only=False)
    return state["optimizer_history"][-1]["num_updates"], state["model"], state.get("last_optimizer_state")


def training_trials(work, inp, rng, kills):
    """fairseq-train killed at random moments and rerun: same number of updates? bit-identical weights?"""
    import torch

    folder = os.path.join(work, "fairseq-train")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    ref_dir = os.path.join(folder, "reference")
    epochs = 12  # long enough that most of the run is training, not start-up
    code, seconds = faultinject.run_to_end(train_command(inp["data"], ref_dir, epochs), folder)
    assert code == 0
    ref_updates, ref_model, ref_opt = checkpoint_state(os.path.join(ref_dir, "checkpoint_last.pt"))
    rows = []
    for k in range(kills):
        save = os.path.join(folder, f"killed-{k}")
        delay = rng.uniform(0.5, 0.95) * seconds
        killed = faultinject.run_killed(train_command(inp["data"], save, epochs), folder, delay)
        last = os.path.join(save, "checkpoint_last.pt")
        at = checkpoint_state(last)[0] if os.path.exists(last) else 0
        code, _ = faultinject.run_to_end(train_command(inp["data"], save, epochs), folder)
        updates, model, opt = checkpoint_state(last)
        same_weights = all(torch.equal(model[n], ref_model[n]) for n in ref_model)
        max_diff = max(float((model[n].float() - ref_model[n].float()).abs().max()) for n in ref_model)
        rows.append({"stage": "fairseq-train", "delay": round(delay, 2), "killed": killed,
                     "phase": f"resumed from update {at}", "rerun_status": code,
                     "updates": updates, "reference_updates": ref_updates, "identical": same_weights,
                     "max_abs_weight_difference": max_diff})
    return rows


# ---------------------------------------------------------------------------------------------- recipe
def write_recipe_corpus(base):
    """A parallel text for `run.sh --preset tiny --src --tgt` (the Bible needs Debian packages)."""
    pairs = toydata.toy_pairs(600, seed=5)
    for side, name in ((0, "corpus.src"), (1, "corpus.tgt")):
        with open(os.path.join(base, name), "w") as f:
            f.writelines(p[side] + "\n" for p in pairs)
    return os.path.join(base, "corpus.src"), os.path.join(base, "corpus.tgt")


def recipe_command(workdir, src, tgt):
    return [os.path.join(REPO, "examples", "bible", "run.sh"), "--preset", "tiny", "--workdir", workdir,
            "--src", src, "--tgt", tgt, "--src-lang", "xx", "--tgt-lang", "yy", "--jobs", "2"]


def recipe_outputs(workdir):
    """What a recipe run must produce identically: data, distilled corpora (text and binarized), the quality
    fields of every evaluation (the models' weights are compared apart: their files also hold paths)."""
    return [os.path.join(workdir, "data", "bin"), os.path.join(workdir, "data", "raw"),
            *files(os.path.join(workdir, "distill"), "*.xx"), *files(os.path.join(workdir, "distill"), "*.yy"),
            os.path.join(workdir, "data-seqkd"), os.path.join(workdir, "data-inter"), os.path.join(workdir, "eval")]


def weights(path):
    """A checkpoint's model weights (its bytes also hold paths, which differ between work folders)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def same_weights(a, b):
    import torch

    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def recipe_models(workdir):
    return files(os.path.join(workdir, "models"), "*/checkpoint_last.pt")


def steps_done(workdir):
    plan = os.path.join(workdir, "plan.tsv")
    if not os.path.exists(plan):
        return "before the plan"
    with open(plan) as f:
        steps = [line.split("\t") for line in f if line.strip()]
    done = [s[0] for s in steps if s[1] != "-" and os.path.exists(s[1])]
    logs = {s[0]: s[2] for s in steps}
    started = [s[0] for s in steps if os.path.exists(logs[s[0]]) and s[0] not in done]
    return f"{len(done)}/{len(steps)} steps done" + (f", inside: {', '.join(started)}" if started else "")


def recipe_trials(work, rng, kills):
    folder = os.path.join(work, "recipe")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    src, tgt = write_recipe_corpus(folder)
    ref = os.path.join(folder, "reference")
    code, seconds = faultinject.run_to_end(recipe_command(ref, src, tgt), folder, timeout=1800,
                                           log=os.path.join(folder, "reference.log"))
    assert code == 0, faultinject._tail(os.path.join(folder, "reference.log"))
    ref_print = faultinject.fingerprint(recipe_outputs(ref), ref)
    ref_models = {os.path.relpath(p, ref): weights(p) for p in recipe_models(ref)}
    rows = []
    killed_dir = os.path.join(folder, "killed")  # the same path in every trial: paths inside outputs agree
    for k in range(kills):
        shutil.rmtree(killed_dir, ignore_errors=True)
        delays, phases = [], []
        for _ in range(2):  # killed twice, between and inside steps, then run to the end
            delay = rng.uniform(0.05, 0.9) * seconds
            delays.append(round(delay, 1))
            was = faultinject.run_killed(recipe_command(killed_dir, src, tgt), folder, delay,
                                         log=os.path.join(folder, f"killed-{k}.log"))
            phases.append(steps_done(killed_dir) if was else "ended before the kill")
        code, _ = faultinject.run_to_end(recipe_command(killed_dir, src, tgt), folder, timeout=1800,
                                         log=os.path.join(folder, f"killed-{k}.log"))
        got = faultinject.fingerprint(recipe_outputs(killed_dir), killed_dir)
        differing = sorted(p for p in set(got) | set(ref_print) if got.get(p) != ref_print.get(p))
        models = {os.path.relpath(p, killed_dir): weights(p) for p in recipe_models(killed_dir)}
        same_models = sorted(m for m in models if m in ref_models and same_weights(models[m], ref_models[m]))
        rows.append({"stage": "recipe --preset tiny (SIGKILL to every process)", "delays": delays,
                     "phases": phases, "rerun_status": code, "identical": code == 0 and not differing,
                     "differing": differing, "models_identical": f"{len(same_models)}/{len(ref_models)}"})
    return rows


def signal_trials(work, rng):
    """SIGTERM / SIGHUP to the recipe runner (the process a scheduler or a dropped SSH session signals)."""
    folder = os.path.join(work, "recipe")
    src, tgt = os.path.join(folder, "corpus.src"), os.path.join(folder, "corpus.tgt")
    rows = []
    for sig in (signal.SIGTERM, signal.SIGHUP):
        wd = os.path.join(folder, f"signal-{sig.name}")
        shutil.rmtree(wd, ignore_errors=True)
        started = faultinject.start(recipe_command(wd, src, tgt), folder, log=os.path.join(folder, f"{sig.name}.log"))
        time.sleep(rng.uniform(20, 60))
        phase = steps_done(wd)
        runner = [p for p in faultinject.processes_of(started.token) if _is_runner(p)]
        target = runner[0] if runner else started.proc.pid
        os.kill(target, sig)
        t0 = time.monotonic()
        deadline = t0 + 30
        while faultinject.processes_of(started.token) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = faultinject.processes_of(started.token)
        gone_after = round(time.monotonic() - t0, 1)
        faultinject.kill_all(started.token)
        started.proc.wait()
        code, _ = faultinject.run_to_end(recipe_command(wd, src, tgt), folder, timeout=1800,
                                         log=os.path.join(folder, f"{sig.name}.log"))
        rows.append({"stage": f"{sig.name} to the recipe runner", "phase": phase, "survivors": len(survivors),
                     "all_gone_after_s": gone_after, "rerun_status": code,
                     "identical": not survivors and code == 0})
    return rows


def _is_runner(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"fairseq_seqkd.workflow" in f.read()
    except OSError:
        return False


def landed_kills(row):
    """How many of a trial's kills found the stage still running."""
    if "killed" in row:
        return int(row["killed"])
    if "phases" in row:
        return sum(p != "ended before the kill" for p in row["phases"])
    return 1  # a signal trial: one signal, sent while the recipe ran


def table(rows):
    lines = ["| stage | kills landed | where the kills landed | rerun | outputs identical |", "|---|---|---|---|---|"]
    by_stage = {}
    for r in rows:
        by_stage.setdefault(r["stage"], []).append(r)
    for stage, rs in by_stage.items():
        landed = sum(landed_kills(r) for r in rs)
        phases = "; ".join(sorted({p for r in rs for p in (r.get("phases") or [r.get("phase", "")]) if p}))[:400]
        reruns = sum(r["rerun_status"] == 0 for r in rs)
        same = sum(bool(r["identical"]) for r in rs)
        lines.append(f"| {stage} | {landed} | {phases} | {reruns}/{len(rs)} completed | {same}/{len(rs)} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trials", type=int, default=2, help="trials per stage (each killed --kills-per-trial times)")
    p.add_argument("--kills-per-trial", type=int, default=2)
    p.add_argument("--train-kills", type=int, default=2)
    p.add_argument("--recipe-kills", type=int, default=1)
    p.add_argument("--workdir", default="/tmp/seqkd-faults")
    p.add_argument("--out", default="runs/faults", help="where the table and the trials go")
    p.add_argument("--only", nargs="*", help="run only these stages (names as in the table)")
    p.add_argument("--skip-recipe", action="store_true")
    p.add_argument("--skip-signals", action="store_true", help="no SIGTERM/SIGHUP trials of the recipe runner")
    args = p.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    inp = build_inputs(os.path.join(args.workdir, "inputs"))
    input_kbest(args.workdir, inp)
    rows = []
    for name, stage in stages(args.workdir, inp).items():
        if args.only and name not in args.only:
            continue
        ref_print, ref_seconds, busy = faultinject.reference(stage)
        for _ in range(args.trials):
            t = faultinject.trial(stage, ref_print, ref_seconds, rng, kills=args.kills_per_trial, busy=busy)
            rows.append({"stage": name, "delays": t.delays, "phases": t.phases, "killed": t.killed,
                         "rerun_status": t.rerun_status, "identical": t.identical, "differing": t.differing,
                         "reference_seconds": round(ref_seconds, 1), "busy_from": round(busy * ref_seconds, 1)})
            print(json.dumps(rows[-1]), flush=True)
    if not args.only or "fairseq-train" in args.only:
        for r in training_trials(args.workdir, inp, rng, args.train_kills):
            rows.append(r)
            print(json.dumps(r), flush=True)
    if not args.skip_recipe:
        recipe = recipe_trials(args.workdir, rng, args.recipe_kills)
        signals = [] if args.skip_signals else signal_trials(args.workdir, rng)
        for r in recipe + signals:
            rows.append(r)
            print(json.dumps(r), flush=True)
    lines = table(rows) + ["", f"seed {args.seed}; {sum(1 for r in rows)} trials; {time.time() - t0:.0f} s"]
    with open(os.path.join(args.out, "faults.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "faults.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print("\n".join(lines))
    failed = [r for r in rows if not r["identical"]]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

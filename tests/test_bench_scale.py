"""The scale rehearsal's instruments (benchmarks/bench_scale.py): what it calls anonymous and file-backed
memory of a process tree, and the growth figures its table derives from them."""

import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = importlib.util.spec_from_file_location("bench_scale", os.path.join(HERE, "..", "benchmarks", "bench_scale.py"))
bench_scale = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench_scale)

MB = 2**20

#: A parent that starts a child; the child touches ANON MB of anonymous memory, the parent reads FILE MB of a
#: memory-mapped file; both hold them for a while, so the sampler (every 20 ms) sees them together.
TREE = r"""
import mmap, subprocess, sys, time
anon, path = int(sys.argv[1]), sys.argv[2]
if len(sys.argv) > 3:  # the child
    block = bytearray(anon * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(1.5)
    sys.exit(0)
child = subprocess.Popen([sys.executable, sys.argv[0], str(anon), path, "child"])
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    total = sum(m[i] for i in range(0, len(m), 4096))
    time.sleep(1.5)
child.wait()
"""


def test_peak_counts_a_childs_anonymous_memory_and_mapped_file_pages_apart(tmp_path):
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    mapped = tmp_path / "mapped.bin"
    mapped.write_bytes(os.urandom(96 * MB))
    _, alone_anon, alone_file = bench_scale.measure([sys.executable, "-c", "import time; time.sleep(1)"],
                                                    str(tmp_path / "alone.log"))
    seconds, anon, filed = bench_scale.measure([sys.executable, str(script), "160", str(mapped)],
                                               str(tmp_path / "tree.log"))
    assert seconds >= 1.5
    # the child's 160 MB are anonymous and belong to the tree (two interpreters on top of one's baseline)
    assert 160 * MB <= anon - alone_anon <= 160 * MB + 2 * alone_anon + 16 * MB, (anon / MB, alone_anon / MB)
    # the mapped file's pages are file-backed, not anonymous
    assert filed - alone_file >= 90 * MB, (filed / MB, alone_file / MB)
    assert anon - alone_anon < 160 * MB + 96 * MB


def test_a_failing_stage_stops_the_rehearsal_with_its_log_tail(tmp_path):
    with pytest.raises(SystemExit, match=r"(?s)exit 3.*no such thing"):
        bench_scale.measure([sys.executable, "-c", "import sys; print('no such thing'); sys.exit(3)"],
                            str(tmp_path / "fail.log"))


def test_table_slope_is_taken_between_the_two_largest_sizes():
    rows = [{"stage": "s", "n": n, "seconds": 1.0, "ms_per_sentence": 1.0, "peak_rss_anon_mb": mb, "peak_rss_file_mb": 0.0}
            for n, mb in ((1000, 100.0), (4000, 130.0), (16000, 136.0))]
    cells = [c.strip() for c in bench_scale.table(rows, [1000, 4000, 16000])[2].strip("|").split("|")]
    slope = 6 * MB / 12000
    assert cells[4:] == ["1.36", "1.00", f"{slope:.0f}", f"{136 + slope * (bench_scale.WMT14_PAIRS - 16000) / MB:,.0f} MB"]


def test_table_growth_slope_and_extrapolation():
    rows = [{"stage": "s", "n": 1000, "seconds": 10.0, "ms_per_sentence": 10.0, "peak_rss_anon_mb": 200.0,
             "peak_rss_file_mb": 50.0},
            {"stage": "s", "n": 16000, "seconds": 176.0, "ms_per_sentence": 11.0, "peak_rss_anon_mb": 215.0,
             "peak_rss_file_mb": 60.0}]
    line = bench_scale.table(rows, [16000, 1000])[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    slope = 15 * MB / 15000  # bytes per sentence
    at = 215 + slope * (bench_scale.WMT14_PAIRS - 16000) / MB
    assert cells == ["s", "10.00, 200 (50)", "11.00, 215 (60)", "1.07", "1.10", f"{slope:.0f}", f"{at:,.0f} MB"]


def test_table_lists_each_ranks_epochs():
    rows = [{"stage": bench_scale.DDP_STAGE, "n": 500, "seconds": 3.0, "ms_per_sentence": 2.0,
             "peak_rss_anon_mb": 110.0, "peak_rss_file_mb": 5.0,
             "rank_epoch_rss_anon_mb": {"0": [100.0, 101.0, 102.0], "1": [100.0, 110.0, 100.0]},
             "rank_epoch_median_rss_anon_mb": {"0": [90.0, 90.0, 99.0], "1": [80.0, 80.0, 80.0]}}]
    lines = bench_scale.table(rows, [500])
    stage = bench_scale.DDP_STAGE
    assert f"| {stage} | 500 | 0 | 100.0 (90.0) | 101.0 (90.0) | 102.0 (99.0) | 1.020 (1.100) |" in lines
    assert f"| {stage} | 500 | 1 | 100.0 (80.0) | 110.0 (80.0) | 100.0 (80.0) | 1.000 (1.000) |" in lines


def test_ranks_memory_is_split_by_rank_zeros_epochs(tmp_path):
    """A fake two-rank 'training' whose rank 0 prints fairseq's epoch lines and grows by ~40 MB in epoch 2:
    the samples land in the epochs rank 0 announced, per rank."""
    script = tmp_path / "ranks.py"
    script.write_text(
        "import sys, time\n"
        "rank = int(sys.argv[sys.argv.index('--distributed-rank') + 1])\n"
        "held = []\n"
        "for epoch in (1, 2):\n"
        "    if rank == 0:\n"
        "        print(f'begin training epoch {epoch}', flush=True)\n"
        "    if epoch == 2 and rank == 0:\n"
        "        held.append(bytearray(40 * 2**20))\n"
        "        for i in range(0, len(held[0]), 4096): held[0][i] = 1\n"
        "    time.sleep(1.0)\n")
    _, epochs, _ = bench_scale.measure_ranks([sys.executable, str(script)], str(tmp_path / "ranks.log"))
    assert sorted(epochs) == [0, 1] and all(len(e) == 2 for e in epochs.values())
    (p1, m1), (p2, m2) = epochs[0]
    assert 35 * MB <= m2 - m1 <= 45 * MB and p2 - p1 >= 35 * MB
    (q1, n1), (q2, n2) = epochs[1]
    assert abs(n2 - n1) < 8 * MB

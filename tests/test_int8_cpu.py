"""fairseq_seqkd.int8_cpu: what CTranslate2's int8 products run on, from a CPU's flags and the libraries' caps."""

import pytest

from fairseq_seqkd.int8_cpu import cpu_info, ctranslate2_int8_isa, describe

#: flags of three real kinds of x86-64 CPU (Linux's names; only the ones that matter here)
ZEN2 = frozenset("sse4_2 avx avx2 fma".split())  # AMD EPYC 7002: AVX2 only (the CI machine's kind)
ZEN4 = frozenset("sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni".split())  # AMD EPYC 9004
SKYLAKE_X = frozenset("sse4_2 avx avx2 fma avx512f avx512bw".split())  # Intel Xeon Skylake: AVX-512, no VNNI
ALDER_LAKE = frozenset("sse4_2 avx avx2 fma avx_vnni".split())  # Intel client: AVX-VNNI, no AVX-512


@pytest.mark.parametrize("vendor,flags,env,expected", [
    ("AuthenticAMD", ZEN2, {}, (False, "AVX2 without VNNI", "oneDNN")),
    ("AuthenticAMD", ZEN4, {}, (True, "AVX-512 VNNI", "oneDNN")),
    ("AuthenticAMD", ZEN4, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, (False, "AVX2 without VNNI", "oneDNN")),
    ("AuthenticAMD", ZEN4, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, (False, "AVX-512 without VNNI", "oneDNN")),
    ("AuthenticAMD", ZEN4, {"DNNL_MAX_CPU_ISA": "AVX2"}, (False, "AVX2 without VNNI", "oneDNN")),
    # AVX2_VNNI is the VEX encoding (AVX-VNNI), which these AMD CPUs do not have: held there, oneDNN uses AVX2
    ("AuthenticAMD", ZEN4, {"ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"}, (False, "AVX2 without VNNI", "oneDNN")),
    ("AuthenticAMD", ZEN4, {"CT2_USE_MKL": "1"}, (True, "AVX-512 VNNI", "MKL")),
    ("GenuineIntel", SKYLAKE_X, {}, (False, "AVX-512 without VNNI", "MKL")),
    ("GenuineIntel", ALDER_LAKE, {}, (True, "AVX-VNNI", "MKL")),
    ("GenuineIntel", ALDER_LAKE, {"CT2_USE_MKL": "0"}, (True, "AVX-VNNI", "oneDNN")),
    ("GenuineIntel", ZEN4, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, (False, "AVX2 without VNNI", "MKL")),
    ("GenuineIntel", ZEN4, {"MKL_ENABLE_INSTRUCTIONS": "AVX512_E1"}, (True, "AVX-512 VNNI", "MKL")),
])
def test_the_instruction_set_follows_the_cpu_and_the_libraries_caps(vendor, flags, env, expected):
    assert tuple(ctranslate2_int8_isa(vendor, flags, env)) == expected


def test_an_unknown_cpu_is_said_to_be_unknown(tmp_path):
    assert cpu_info(str(tmp_path / "missing")) == (None, None)
    assert ctranslate2_int8_isa(None, None, {}) is None
    assert "not known here" in describe(None)


def test_cpu_info_reads_the_first_cpu(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                    "processor\t: 1\nvendor_id\t: Other\nflags\t\t: fpu\n", encoding="utf-8")
    assert cpu_info(str(info)) == ("AuthenticAMD", frozenset({"fpu", "avx2", "avx512_vnni"}))


def test_the_warning_says_what_saturates_and_what_is_exact():
    saturating = describe(ctranslate2_int8_isa("AuthenticAMD", ZEN2, {}))
    assert saturating.startswith("int8 products run on AVX2 without VNNI (oneDNN): their 16-bit sums saturate")
    assert "--engine-quantize float32 gives the exact outputs" in saturating
    assert describe(ctranslate2_int8_isa("AuthenticAMD", ZEN4, {})) == \
        "int8 products run on AVX-512 VNNI (oneDNN): exact 32-bit sums"

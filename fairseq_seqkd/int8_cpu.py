"""Which x86 instructions a CPU's int8 matrix products run on, and what they cost there.

int8 matrix products multiply unsigned 8-bit inputs by signed 8-bit weights. With VNNI (AVX-512 VNNI,
or AVX-VNNI on recent client CPUs) one instruction (``vpdpbusd``) multiplies and adds four such pairs into
a 32-bit sum, exactly. Without it, libraries use AVX2's ``vpmaddubsw``, which adds two products into a
16-bit sum that saturates at 32,767 (255 x 127 x 2 = 64,770 does not fit): oneDNN's "Nuances of int8
computations" describes it, and the remedy, inputs of at most 7 bits. So int8 quality depends on the CPU:

- ``seqkd`` (our LSTM decoder, fbgemm through torch) asks fbgemm for 7-bit inputs (``reduce_range``): its
  products never saturate, and its int8 outputs are the same on every x86 CPU (tested with fbgemm held to
  AVX2 by ``FBGEMM_ENABLE_INSTRUCTIONS``).
- ``ctranslate2`` quantises inputs to 8 bits (oneDNN on AMD and other CPUs, Intel MKL on Intel's): where
  the CPU has no VNNI its products saturate, and its int8 outputs move much further from float32's
  (measured in docs/engines.md, "int8 and the CPU"). The engine says so when it loads (:func:`describe`).

The instruction set is read from the CPU's flags (``/proc/cpuinfo``) and the caps a user may put on the
libraries (``ONEDNN_MAX_CPU_ISA``/``DNNL_MAX_CPU_ISA`` for oneDNN, ``MKL_ENABLE_INSTRUCTIONS`` for MKL,
``CT2_USE_MKL`` for CTranslate2's choice between them). Outside Linux on x86-64 it is unknown (``None``).
"""

import os
import platform
from typing import FrozenSet, Mapping, NamedTuple, Optional

#: CPU flags (Linux's names) of the instructions that add 8-bit products into 32-bit sums exactly
VNNI_FLAGS = ("avx512_vnni", "avx_vnni")
#: oneDNN ISA caps (``ONEDNN_MAX_CPU_ISA``) under which it may use VNNI, with the flag each needs
_ONEDNN_VNNI = {"AVX2_VNNI": ("avx_vnni",), "AVX2_VNNI_2": ("avx_vnni",), "AVX512_CORE_VNNI": ("avx512_vnni",),
                "AVX512_CORE_BF16": ("avx512_vnni",), "AVX512_CORE_FP16": ("avx512_vnni",),
                "AVX512_CORE_AMX": ("avx512_vnni",), "AVX512_CORE_AMX_FP16": ("avx512_vnni",),
                "AVX10_1_512": ("avx512_vnni",), "AVX10_1_512_AMX": ("avx512_vnni",),
                "AVX10_1_512_AMX_FP16": ("avx512_vnni",), "ALL": VNNI_FLAGS}
#: MKL caps (``MKL_ENABLE_INSTRUCTIONS``) that rule VNNI out
_MKL_NO_VNNI = ("SSE4_2", "AVX", "AVX2", "AVX512", "AVX512_MIC")


class Int8Isa(NamedTuple):
    """What int8 products run on: ``vnni`` (exact 32-bit sums) or not, and a name for people."""

    vnni: bool
    name: str  # e.g. "AVX-512 VNNI", "AVX2 without VNNI"
    backend: str  # the library that runs them: "oneDNN", "MKL" or "fbgemm"


def cpu_info(path: str = "/proc/cpuinfo"):
    """(vendor, flags) of the first CPU in ``path``; (None, None) where it cannot be read."""
    vendor, flags = None, None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and vendor is None:
                    vendor = value.strip()
                elif key == "flags" and flags is None:
                    flags = frozenset(value.split())
                if vendor is not None and flags is not None:
                    break
    except OSError:
        return None, None
    return vendor, flags


def _allows_avx512(backend: str, cap: str) -> bool:
    if backend == "MKL":
        return cap == "" or cap.startswith("AVX512")
    return cap == "ALL" or cap.startswith(("AVX512", "AVX10"))


def ctranslate2_int8_isa(vendor: Optional[str], flags: Optional[FrozenSet[str]],
                         environ: Mapping[str, str] = os.environ) -> Optional[Int8Isa]:
    """What CTranslate2's int8 products run on, for a CPU with this ``vendor`` and ``flags``: MKL on Intel's
    CPUs (unless ``CT2_USE_MKL`` says otherwise), oneDNN elsewhere, each within its cap; None if unknown."""
    if flags is None:
        return None
    use_mkl = environ.get("CT2_USE_MKL", "").strip().lower()
    mkl = use_mkl in ("1", "true", "on", "yes") if use_mkl else vendor == "GenuineIntel"
    if mkl:
        backend, cap = "MKL", environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip().upper()
        usable = [] if cap in _MKL_NO_VNNI else [f for f in VNNI_FLAGS if f in flags]
    else:
        backend = "oneDNN"
        cap = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
        usable = [f for f in VNNI_FLAGS if f in flags and f in _ONEDNN_VNNI.get(cap, ())]
    avx512 = "avx512bw" in flags and _allows_avx512(backend, cap)
    if usable:
        name = "AVX-512 VNNI" if "avx512_vnni" in usable else "AVX-VNNI"
    elif avx512:
        name = "AVX-512 without VNNI"
    else:
        name = "AVX2 without VNNI" if "avx2" in flags else "SSE without VNNI"
    return Int8Isa(bool(usable), name, backend)


def this_cpu_ctranslate2_int8_isa() -> Optional[Int8Isa]:
    """:func:`ctranslate2_int8_isa` for this machine (None outside x86-64 Linux)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    return ctranslate2_int8_isa(*cpu_info())


def describe(isa: Optional[Int8Isa]) -> str:
    """One line on what CTranslate2's int8 costs on ``isa`` (a warning where its products saturate)."""
    if isa is None:
        return "int8 on a CPU whose instruction set is not known here (int8 quality depends on it: docs/engines.md)"
    if isa.vnni:
        return f"int8 products run on {isa.name} ({isa.backend}): exact 32-bit sums"
    return (f"int8 products run on {isa.name} ({isa.backend}): their 16-bit sums saturate, and int8 outputs "
            f"differ from float32's far more than on CPUs with VNNI ({MEASURED}; docs/engines.md, 'int8 and the "
            f"CPU'); --engine-quantize float32 gives the exact outputs")


#: What saturation cost where it was measured (docs/engines.md, "int8 and the CPU"): a Bible Transformer teacher.
MEASURED = ("a Bible Transformer teacher: 62% of its training outputs as float32's and test BLEU -0.54, against "
            "87% and -0.11 with AVX-512 VNNI")

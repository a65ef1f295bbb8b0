"""Load the compiled kernels: the best ISA build this CPU can run.

The scalar build is always loaded first, because it is safe on any x86-64 CPU
and answers which of the other builds this CPU supports. HYBRIDREF_ISA
(scalar, avx2, avx512) forces a build, e.g. to test the portable path.

HYBRIDREF_SANITIZE=1 loads the AddressSanitizer + UBSan builds (hybridref._hrc_san_<isa>, made by
`HYBRIDREF_SANITIZE=1 pip install -e .`) instead. Python itself is not built with ASan, so its runtime
must be loaded first: LD_PRELOAD=$(gcc -print-file-name=libasan.so), with ASAN_OPTIONS=detect_leaks=0
(Python keeps its objects to the end); `make fuzz` sets all of it.
"""
import importlib
import os

ISAS = ("avx512", "avx2", "scalar")
_loaded = {}


def _module_name(isa):
    """hybridref._hrc_<isa>, or the sanitizer build's hybridref._hrc_san_<isa> (HYBRIDREF_SANITIZE=1)."""
    if os.environ.get("HYBRIDREF_SANITIZE") != "1":
        return f"hybridref._hrc_{isa}"
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        raise ImportError("HYBRIDREF_SANITIZE=1 loads the sanitizer builds, which need the ASan runtime loaded "
                          "first: run with LD_PRELOAD=$(gcc -print-file-name=libasan.so) "
                          "ASAN_OPTIONS=detect_leaks=0 (or `make fuzz`)")
    return f"hybridref._hrc_san_{isa}"


def _import(isa):
    if isa not in _loaded:
        name = _module_name(isa)
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            build = "HYBRIDREF_SANITIZE=1 pip install -e ." if "_san_" in name else "pip install -e ."
            raise ImportError(
                f"the C kernels ({isa} build, {name}) are not compiled: run `{build}` "
                f"in the hybridref checkout ({e})") from e
        _loaded[isa] = (module.ffi, module.lib)
    return _loaded[isa]


def supported_isas():
    """The ISA builds this CPU can run, best first."""
    _, scalar = _import("scalar")
    ok = {"scalar": True, "avx2": bool(scalar.hr_cpu_has_avx2_fma()), "avx512": bool(scalar.hr_cpu_has_avx512())}
    return [isa for isa in ISAS if ok[isa]]


def best_isa():
    return supported_isas()[0]


def selected_isa():
    """The build load() picks when not given one: $HYBRIDREF_ISA, else the best the CPU supports."""
    return os.environ.get("HYBRIDREF_ISA") or best_isa()


def describe_isas():
    """One line for `hybridref info`: the builds this CPU runs, the one in use, how to force one.
    Raises ImportError when the kernels are not compiled."""
    return (f"CPU ISA builds supported: {', '.join(supported_isas())} "
            f"(in use: {selected_isa()}; force with HYBRIDREF_ISA)")


def load(isa=None):
    """(ffi, lib) for `isa`, default $HYBRIDREF_ISA or the best the CPU supports."""
    isa = isa or selected_isa()
    if isa not in ISAS:
        raise ValueError(f"unknown ISA {isa!r}: choose one of {', '.join(ISAS)} (HYBRIDREF_ISA or isa=)")
    if isa not in supported_isas():
        raise ValueError(f"this CPU cannot run the {isa} build; it supports: {', '.join(supported_isas())}")
    return _import(isa)

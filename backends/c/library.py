"""Load the compiled kernels: the best ISA build this CPU can run.

The scalar build is always loaded first, because it is safe on any x86-64 CPU
and answers which of the other builds this CPU supports. HYBRIDREF_ISA
(scalar, avx2, avx512) forces a build, e.g. to test the portable path.
"""
import importlib
import os

ISAS = ("avx512", "avx2", "scalar")
_loaded = {}


def _import(isa):
    if isa not in _loaded:
        try:
            module = importlib.import_module(f"hybridref._hrc_{isa}")
        except ImportError as e:
            raise ImportError(
                f"the C kernels ({isa} build) are not compiled: run `pip install -e .` "
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

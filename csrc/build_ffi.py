"""cffi out-of-line API builds of the kernels: one C source tree compiled at three ISA levels.

`hybridref._hrc_scalar` (portable x86-64), `hybridref._hrc_avx2` (-mavx2 -mfma) and
`hybridref._hrc_avx512` (-mavx512f/vl/bw/dq). backends/c/library.py loads the best
one the CPU supports. The cdef is the concatenation of the public headers
csrc/<name>.h that sit beside a csrc/<name>.c, with preprocessor lines dropped.
"""
import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ISA_FLAGS = {
    "scalar": [],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"],
}
BASE_FLAGS = ["-O3", "-fopenmp", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-fno-math-errno", "-Wall"]


def _public_headers():
    """A header is public (part of the cdef) when a kernel file of the same name exists;
    internal headers (common.h, vmath.h) have none."""
    return sorted(h for h in glob.glob(os.path.join(HERE, "*.h")) if os.path.exists(h[:-2] + ".c"))


def _cdef():
    lines = []
    for header in _public_headers():
        with open(header) as f:
            lines += [ln for ln in f if not ln.lstrip().startswith("#")]
    return "".join(lines)


def make_ffi(isa):
    """A unity build: the module's one translation unit includes every kernel file,
    so the three ISA builds never share object files, and a static helper defined
    twice is a compile error rather than a silent duplicate."""
    ffi = FFI()
    ffi.cdef(_cdef())
    kernels = sorted(glob.glob(os.path.join(HERE, "*.c")))
    unity = "".join(f'#include "{os.path.basename(p)}"\n' for p in kernels)
    ffi.set_source(
        f"hybridref._hrc_{isa}",
        unity,
        include_dirs=[os.path.relpath(HERE)],
        depends=[os.path.relpath(p) for p in kernels + sorted(glob.glob(os.path.join(HERE, "*.h")))],
        extra_compile_args=BASE_FLAGS + ISA_FLAGS[isa],
        extra_link_args=["-fopenmp"],
    )
    return ffi


ffi_scalar = make_ffi("scalar")
ffi_avx2 = make_ffi("avx2")
ffi_avx512 = make_ffi("avx512")

if __name__ == "__main__":
    for isa, ffi in (("scalar", ffi_scalar), ("avx2", ffi_avx2), ("avx512", ffi_avx512)):
        ffi.compile(verbose=False)

"""cffi out-of-line API builds of the kernels: one C source tree compiled at three ISA levels.

`hybridref._hrc_scalar` (portable x86-64), `hybridref._hrc_avx2` (-mavx2 -mfma) and
`hybridref._hrc_avx512` (-mavx512f/vl/bw/dq). backends/c/library.py loads the best
one the CPU supports. The cdef is the concatenation of the public headers
csrc/<name>.h that sit beside a csrc/<name>.c, with preprocessor lines dropped.

With HYBRIDREF_SANITIZE=1 at build time (`HYBRIDREF_SANITIZE=1 pip install -e .`, setup.py) the
three builds are also made with AddressSanitizer and UndefinedBehaviorSanitizer, as separate
modules `hybridref._hrc_san_<isa>` beside the normal ones, which stay as they are. They are loaded
instead of the normal ones when HYBRIDREF_SANITIZE=1 at run time, with the ASan runtime preloaded
into Python (`make fuzz` does both; see library.py).
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
# -O1 -g for exact reports; UB aborts (-fno-sanitize-recover) so that a finding fails the run
SANITIZE_FLAGS = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"]


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


def make_ffi(isa, sanitize=False):
    """A unity build: the module's one translation unit includes every kernel file,
    so the three ISA builds never share object files, and a static helper defined
    twice is a compile error rather than a silent duplicate. sanitize: the ASan + UBSan
    build, module hybridref._hrc_san_<isa>."""
    ffi = FFI()
    ffi.cdef(_cdef())
    kernels = sorted(glob.glob(os.path.join(HERE, "*.c")))
    unity = "".join(f'#include "{os.path.basename(p)}"\n' for p in kernels)
    san = SANITIZE_FLAGS if sanitize else []
    ffi.set_source(
        f"hybridref._hrc_{'san_' if sanitize else ''}{isa}",
        unity,
        include_dirs=[os.path.relpath(HERE)],
        depends=[os.path.relpath(p) for p in kernels + sorted(glob.glob(os.path.join(HERE, "*.h")))],
        extra_compile_args=BASE_FLAGS + ISA_FLAGS[isa] + san,  # the later -O1 wins
        extra_link_args=["-fopenmp"] + san,
    )
    return ffi


ffi_scalar = make_ffi("scalar")
ffi_avx2 = make_ffi("avx2")
ffi_avx512 = make_ffi("avx512")
ffi_san_scalar = make_ffi("scalar", sanitize=True)
ffi_san_avx2 = make_ffi("avx2", sanitize=True)
ffi_san_avx512 = make_ffi("avx512", sanitize=True)

if __name__ == "__main__":
    builds = [ffi_scalar, ffi_avx2, ffi_avx512]
    if os.environ.get("HYBRIDREF_SANITIZE") == "1":
        builds += [ffi_san_scalar, ffi_san_avx2, ffi_san_avx512]
    for ffi in builds:
        ffi.compile(verbose=False)

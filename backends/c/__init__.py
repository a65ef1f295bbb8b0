"""The C backend: hand-written SIMD + OpenMP kernels (csrc/) through cffi.

Each module here wraps the C file of the same name: it checks every argument
(backends/c/checks.py), allocates outputs and calls the kernel. float32 only.
"""
import sys
import warnings

import numpy as np

from hybridref.errors import UserError
from hybridref.limits import OVERSUBSCRIPTION, ThreadCapWarning, environment_threads, usable_cores

from ..base import Backend, collect_ops, package_modules
from . import decode, library

# HR_ELAYOUT of csrc/common.h: the decoder met a weight matrix not in its panel layout
LAYOUT = 3


class CBackend(Backend):
    name = "c"

    def __init__(self, isa=None, threads=None):
        self.ffi, self.lib = library.load(isa)
        self.isa = self.ffi.string(self.lib.hr_build_isa()).decode()
        if threads is None:
            threads = environment_threads(lambda message: warnings.warn(message, ThreadCapWarning, stacklevel=3))
        if threads is not None:
            self.set_threads(threads)
        collect_ops(self, package_modules(sys.modules[__name__]), bind=True)

    def set_threads(self, n):
        """OpenMP threads for the kernels: 1 to OVERSUBSCRIPTION x the cores this process may run on.
        A few more threads than cores are allowed (the tests check results do not depend on the
        count); far more only cost memory, and tens of thousands crash the OpenMP runtime."""
        if type(n) is not int and not isinstance(n, np.integer):
            raise UserError(f"threads must be a whole number, got {n!r}")
        most = OVERSUBSCRIPTION * usable_cores()
        if not 1 <= n <= most:
            raise UserError(f"threads must be >= 1 and at most {most} ({OVERSUBSCRIPTION} per core of the "
                            f"{usable_cores()} cores this process may run on), got {n}")
        self.lib.hr_set_num_threads(int(n))

    @property
    def threads(self):
        return int(self.lib.hr_get_num_threads())

    def f32(self, arr):
        """float* into a float32 C-contiguous array (checked by the caller)."""
        return self.ffi.cast("float *", self.ffi.from_buffer(arr))

    def i64(self, arr):
        return self.ffi.cast("int64_t *", self.ffi.from_buffer(arr))

    def f32_or_null(self, arr):
        return self.ffi.NULL if arr is None else self.f32(arr)

    def raise_status(self, op, status):
        if status == LAYOUT:
            raise RuntimeError(f"{op}: a weight matrix reached the decoder's GEMV without its panel layout (status "
                               f"{status}): its record must list it among the weights of a Linear layer "
                               f"(backends/c/decode.py, _MATRIX_MODULES)")
        if status != 0:
            raise MemoryError(f"{op}: the C kernel could not allocate its scratch memory (status {status})")

    def decoder(self, model, batch, max_len, weights="f32"):
        """The streaming decoder that runs a whole model step in one C call (backends/c/decode.py);
        weights: "f32", or "bf16" (its weight matrices stored in bfloat16)."""
        return decode.Decoder(self, model, batch, max_len, weights)

    def describe(self):
        return f"c (isa {self.isa}, {self.threads} OpenMP threads, float32)"

"""The NumPy backend: the readable oracle every other backend is tested against.

One module per concern, with the same names as the C kernels (csrc/<name>.c)
and their wrappers (backends/c/<name>.py). float32 and float64 both work.
"""
import sys

from ..base import Backend, collect_ops, package_modules
from . import decode


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        collect_ops(self, package_modules(sys.modules[__name__]))

    def decoder(self, model, batch, max_len, weights="f32"):
        """The layer-by-layer streaming decoder (backends/numpy/decode.py), on the float32 weights."""
        decode.check_weights(weights)
        return decode.Decoder(model, batch, max_len)

    def describe(self):
        return "numpy (reference; float32/float64; BLAS for matmul)"

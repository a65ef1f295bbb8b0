"""The NumPy backend: the readable oracle every other backend is tested against.

One module per concern, with the same names as the C kernels (csrc/<name>.c)
and their wrappers (backends/c/<name>.py). float32 and float64 both work.
"""
from ..base import Backend, collect_ops
from . import (activations, attention, conv1d, decode, dropout, embedding, linear, losses, norms, optim, pooling, rope,
               selective_scan)

MODULES = (linear, embedding, norms, activations, dropout, losses, optim, pooling, attention, conv1d,
           selective_scan, rope, decode)


class NumpyBackend(Backend):
    name = "numpy"
    dtypes = ("float32", "float64")

    def __init__(self):
        collect_ops(self, MODULES)

    def decoder(self, model, batch, max_len):
        """The layer-by-layer streaming decoder (backends/numpy/decode.py)."""
        return decode.Decoder(model, batch, max_len)

    def describe(self):
        return "numpy (reference; float32/float64; BLAS for matmul)"

"""Normalisations over the last axis: RMSNorm (Mamba, Llama) and LayerNorm (GPT-2)."""
import numpy as np

from .module import Module, Param


class RMSNorm(Module):
    """y = x / √(mean(x²) + eps) ⊙ w"""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = Param(np.ones(d), decay=False)

    def forward(self, x):
        x2 = np.ascontiguousarray(x).reshape(-1, self.d)
        y, rstd = self.be.rmsnorm_forward(x2, self.weight.data, self.eps)
        self.save(x2, rstd, x.shape)
        return y.reshape(x.shape)

    def backward(self, dy):
        x2, rstd, shape = self.saved()
        dx, dw = self.be.rmsnorm_backward(np.ascontiguousarray(dy).reshape(-1, self.d), x2, self.weight.data, rstd)
        self.weight.grad += dw
        return dx.reshape(shape)

    def step(self, x):
        """The forward without keeping anything for backward: x (M, d) -> (M, d)."""
        return self.be.rmsnorm_forward(x, self.weight.data, self.eps)[0]


class LayerNorm(Module):
    """y = (x − mean) / √(var + eps) ⊙ w + b"""

    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.d, self.eps = d, eps
        self.weight = Param(np.ones(d), decay=False)
        self.bias = Param(np.zeros(d), decay=False)

    def forward(self, x):
        x2 = np.ascontiguousarray(x).reshape(-1, self.d)
        y, mean, rstd = self.be.layernorm_forward(x2, self.weight.data, self.bias.data, self.eps)
        self.save(x2, mean, rstd, x.shape)
        return y.reshape(x.shape)

    def backward(self, dy):
        x2, mean, rstd, shape = self.saved()
        dx, dw, db = self.be.layernorm_backward(np.ascontiguousarray(dy).reshape(-1, self.d), x2,
                                                self.weight.data, mean, rstd)
        self.weight.grad += dw
        self.bias.grad += db
        return dx.reshape(shape)

    def step(self, x):
        """The forward without keeping anything for backward: x (M, d) -> (M, d)."""
        return self.be.layernorm_forward(x, self.weight.data, self.bias.data, self.eps)[0]


def make_norm(kind, d, eps=1e-5):
    if kind == "rmsnorm":
        return RMSNorm(d, eps)
    if kind == "layernorm":
        return LayerNorm(d, eps)
    raise ValueError(f"unknown norm {kind!r}: use 'rmsnorm' or 'layernorm'")

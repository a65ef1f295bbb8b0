"""Linear: y = x Wᵀ + b over the last axis (torch.nn.Linear's layout and default init)."""
import math

import numpy as np

from .module import Module, Param


class Linear(Module):
    def __init__(self, d_in, d_out, bias=True, rng=None, std=None):
        """W (d_out, d_in) ~ U(±1/√d_in) as torch, or N(0, std²) when std is given; b = 0."""
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.d_in, self.d_out = d_in, d_out
        if std is None:
            bound = 1.0 / np.sqrt(d_in)
            w = rng.uniform(-bound, bound, (d_out, d_in))
        else:
            w = rng.normal(0.0, std, (d_out, d_in))
        self.weight = Param(w)
        self.bias = Param(np.zeros(d_out), decay=False) if bias else None

    def forward(self, x):
        """x (..., d_in) -> y (..., d_out)"""
        x2 = np.ascontiguousarray(x).reshape(-1, self.d_in)
        self.save(x2, x.shape)
        y = self.be.linear_forward(x2, self.weight.data, None if self.bias is None else self.bias.data)
        return y.reshape(*x.shape[:-1], self.d_out)

    def backward(self, dy):
        x2, shape = self.saved()
        dx, dw, db = self.be.linear_backward(np.ascontiguousarray(dy).reshape(-1, self.d_out), x2,
                                             self.weight.data, self.bias is not None)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx.reshape(shape)

    def step(self, x):
        """The forward without keeping anything for backward (decoding): x (M, d_in) -> (M, d_out)."""
        return self.be.linear_forward(x, self.weight.data, None if self.bias is None else self.bias.data)


def xavier_uniform(rng, d_out, d_in, gain):
    """(d_out, d_in) ~ U(±gain·√(6/(d_in + d_out))), torch.nn.init.xavier_uniform_."""
    bound = gain * math.sqrt(6.0 / (d_in + d_out))
    return rng.uniform(-bound, bound, (d_out, d_in))

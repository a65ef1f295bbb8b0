"""A linear map with soft-capped outputs (the logits of RecurrentGemma and Gemma 2):

    y = c · tanh((x Wᵀ + b) / c)                 x (..., d_in) -> y (..., d_out), |y| < c

which leaves small logits unchanged (y ≈ z for |z| ≪ c) and bounds large ones smoothly; the
backward is dz = dy (1 − tanh²(z/c)). The C decoder applies the same cap to its logits
(csrc/decode.c, the header float `logit_softcap`).
"""
import numpy as np

from .linear import Linear


class SoftCappedLinear(Linear):
    def __init__(self, d_in, d_out, cap, bias=True, rng=None, std=None):
        if not cap > 0:
            raise ValueError(f"a soft cap must be a positive number, got {cap!r}")
        super().__init__(d_in, d_out, bias=bias, rng=rng, std=std)
        self.cap = cap

    def _cap(self, z):
        """z -> (c·tanh(z/c), tanh(z/c))"""
        t = np.tanh(z / z.dtype.type(self.cap))
        return t * z.dtype.type(self.cap), t

    def forward(self, x):
        y, t = self._cap(super().forward(x))
        self.save(t)
        return y

    def backward(self, dy):
        (t,) = self.saved()
        return super().backward(dy * (1 - t * t))

    def step(self, x):
        return self._cap(super().step(x))[0]

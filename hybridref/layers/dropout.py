"""Dropout on the residual branches (GPT-2 / nanoGPT placement: after the embedding and after each
mixer's and each MLP's output), inverted so that evaluation is the identity.

    y = x ⊙ keep / (1 − p)   while a seed is set (training),   y = x   otherwise

The mask comes from the backend op `dropout`, a hash of (seed, row, position, feature): nothing is
stored for the backward, which applies the same mask to dy. `Module.set_dropout_seed` gives every
Dropout layer its own seed for one training step.
"""
from .module import Module


class Dropout(Module):
    takes_seed = True

    def __init__(self, p):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = None  # set per training step by Module.set_dropout_seed; None: evaluation

    def forward(self, x):
        """x (B,T,...) -> y (B,T,...)"""
        if not self.p:
            return x
        self.save(self.seed)
        return x if self.seed is None else self.be.dropout(x, self.p, self.seed)

    def backward(self, dy):
        if not self.p:
            return dy
        (seed,) = self.saved()
        return dy if seed is None else self.be.dropout(dy, self.p, seed)

"""Token embedding: y = table[ids] (torch.nn.Embedding's layout; GPT-2's N(0, 0.02²) init)."""
import numpy as np

from .module import Module, Param


class Embedding(Module):
    def __init__(self, vocab_size, d, rng, std=0.02):
        super().__init__()
        self.vocab_size, self.d = vocab_size, d
        self.weight = Param(rng.normal(0.0, std, (vocab_size, d)))

    def forward(self, ids):
        """int64 ids (...) -> (..., d)"""
        flat = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        self.save(flat, ids.shape)
        return self.be.embedding_forward(flat, self.weight.data).reshape(*ids.shape, self.d)

    def backward(self, dy):
        flat, _ = self.saved()
        self.weight.grad += self.be.embedding_backward(np.ascontiguousarray(dy).reshape(-1, self.d), flat,
                                                       self.vocab_size)

    def step(self, ids):
        """ids (B,) -> (B, d)"""
        return self.be.embedding_forward(np.ascontiguousarray(ids, dtype=np.int64), self.weight.data)

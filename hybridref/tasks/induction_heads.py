"""Induction heads (Olsson et al. 2022, as the synthetic task of Gu & Dao 2023, "Mamba", section
4.1.2 and appendix E.1: vocabulary 16, training length 256).

Vocabulary V: V − 1 is the special token, 0 … V − 2 ordinary tokens. An example of length T:

    inputs  = uniformly random ordinary tokens, the special token at one random position p < T − 2,
              and again at the last position T − 1
    targets = at T − 1 (scored): inputs[p + 1], the token that followed the special token before

The model must find the earlier occurrence of the current token and copy its successor.
"""
import numpy as np

from .base import GeneratedTask


class InductionHeads(GeneratedTask):
    def __init__(self, vocab_size=16, seq_len=256, test_examples=1000):
        if vocab_size < 3 or seq_len < 4:
            raise ValueError(f"induction heads needs vocab_size >= 3 and seq_len >= 4; got {vocab_size}, {seq_len}")
        self.vocab_size, self.seq_len, self.test_examples = vocab_size, seq_len, test_examples
        self.name = "induction-heads"

    def sample(self, n, rng):
        V, T = self.vocab_size, self.seq_len
        special, rows = V - 1, np.arange(n)
        inputs = rng.integers(0, V - 1, (n, T))
        first = rng.integers(0, T - 2, n)
        inputs[rows, first] = inputs[:, T - 1] = special
        targets, mask = np.zeros((n, T), np.int64), np.zeros((n, T), bool)
        targets[:, T - 1], mask[:, T - 1] = inputs[rows, first + 1], True
        return inputs, targets, mask

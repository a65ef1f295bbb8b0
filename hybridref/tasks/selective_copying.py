"""Selective copying (Gu & Dao 2023, "Mamba", section 4.1.1 and appendix E.1; the generator is the
`variable` copying task of the S4 repository, state-spaces/s4 `copying.py`).

Vocabulary A: 0 is noise, A − 1 the marker, 1 … A − 2 data. An example of length T with M tokens to copy:

    inputs  = M data tokens at random positions (in order) among T − 2M + M noise tokens | M markers
    targets = the M data tokens in order, at the M marker positions (scored)

The positions vary per example, so a model must select the data tokens by their content, which a
linear time-invariant filter cannot (the point of the task). The paper: A = 16, M = 16, T = 4,096.
"""
import numpy as np

from .base import GeneratedTask, distinct_choices


class SelectiveCopying(GeneratedTask):
    def __init__(self, vocab_size=16, seq_len=4096, n_memorize=16, test_examples=1000):
        if vocab_size < 3 or n_memorize < 1 or seq_len < 2 * n_memorize:
            raise ValueError(f"selective copying needs vocab_size >= 3 (noise, marker, data), n_memorize >= 1 and "
                             f"seq_len >= 2·n_memorize; got {vocab_size}, {n_memorize}, {seq_len}")
        self.vocab_size, self.seq_len, self.n_memorize = vocab_size, seq_len, n_memorize
        self.test_examples = test_examples
        self.name = "selective-copying"

    def sample(self, n, rng):
        A, T, M = self.vocab_size, self.seq_len, self.n_memorize
        body = T - M  # data and noise; the markers follow
        tokens = rng.integers(1, A - 1, (n, M))
        where = np.sort(distinct_choices(rng, n, body, M), axis=1)
        inputs = np.zeros((n, T), np.int64)
        inputs[np.arange(n)[:, None], where] = tokens
        inputs[:, body:] = A - 1
        targets, mask = np.zeros((n, T), np.int64), np.zeros((n, T), bool)
        targets[:, body:], mask[:, body:] = tokens, True
        return inputs, targets, mask

"""Multi-query associative recall (MQAR), as defined by Arora et al. 2023, "Zoology: Measuring and
Improving Recall in Efficient Language Models" (the generator `multiquery_ar` of HazyResearch/zoology).

An example of length T with P key-value pairs, vocabulary V:

    keys   P distinct tokens of [1, V/2)       values  P distinct tokens of [V/2, V)
    inputs = k1 v1 k2 v2 ... kP vP | x x k3 x x x k1 x ... x      (the first 2P tokens: the pairs)
    targets at each query position: the value of that key (v3 at the k3 above, v1 at the k1), scored

Every key is queried once, at position 2P + 2·g, with the P gaps g drawn without replacement from
[0, (T − 2P)/2) with probability ∝ g'^(a−1), g' = g + 1 (a = 0.01: a power law that favours short
gaps, as repeated bigrams in text; a = 1 is uniform). Every other position holds a uniformly random
token of the whole vocabulary (Zoology's random_non_queries). Requires T even, V > T and 4P ≤ T.

Deviation: the draw without replacement is Gumbel-top-k (argsort of log p + Gumbel noise), the same
distribution as numpy's successive weighted draws, vectorized; numpy's Generator, not the global seed.
"""
import numpy as np

from .base import GeneratedTask, distinct_choices


class MQAR(GeneratedTask):
    def __init__(self, vocab_size=8192, seq_len=64, num_pairs=4, power_a=0.01, test_examples=1000):
        if seq_len % 2 or vocab_size <= seq_len or 4 * num_pairs > seq_len or num_pairs < 1:
            raise ValueError(f"MQAR needs an even seq_len, vocab_size > seq_len and 1 <= 4·num_pairs <= seq_len; "
                             f"got seq_len {seq_len}, vocab_size {vocab_size}, num_pairs {num_pairs}")
        if not power_a > 0:
            raise ValueError(f"MQAR power_a must be > 0, got {power_a}")
        self.vocab_size, self.seq_len, self.num_pairs, self.power_a = vocab_size, seq_len, num_pairs, power_a
        self.test_examples = test_examples
        self.name = f"mqar-{num_pairs}"

    def gap_probabilities(self):
        """p(g) ∝ a·(g+1)^(a−1) over the (T − 2P)/2 query slots."""
        space = (self.seq_len - 2 * self.num_pairs) // 2
        p = self.power_a * np.arange(1, space + 1) ** (self.power_a - 1)
        return p / p.sum()

    def sample(self, n, rng):
        V, T, P = self.vocab_size, self.seq_len, self.num_pairs
        keys = distinct_choices(rng, n, V // 2, P, low=1)
        values = distinct_choices(rng, n, V, P, low=V // 2)
        log_p = np.log(self.gap_probabilities())
        gaps = np.argsort(-(log_p + rng.gumbel(size=(n, len(log_p)))), axis=1)[:, :P]
        inputs = rng.integers(0, V, (n, T))
        inputs[:, 0:2 * P:2], inputs[:, 1:2 * P:2] = keys, values
        rows, query = np.arange(n)[:, None], 2 * P + 2 * gaps
        inputs[rows, query] = keys
        targets, mask = np.zeros((n, T), np.int64), np.zeros((n, T), bool)
        targets[rows, query], mask[rows, query] = values, True
        return inputs, targets, mask

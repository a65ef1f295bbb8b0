"""Few-shot in-context classification: N-way K-shot, with the labels drawn afresh for every sequence
(Chan et al. 2022, "Data Distributional Properties Drive Emergent In-Context Learning in Transformers":
exemplars of fixed classes, labels that only the context gives; here the exemplars are tokens).

C classes of E exemplar tokens each (class c owns the tokens c·E … c·E + E − 1), and N label tokens
C·E … C·E + N − 1. An example of length T:

    choose N distinct classes and a random bijection of them onto the N labels (new in every example)
    context = N·K pairs (exemplar, its class's label): K distinct exemplars of each chosen class, the
              N·K pairs in a random order                                        (2·N·K tokens)
    queries = the remaining T − 2·N·K positions: each an exemplar of a uniformly chosen class of the N,
              drawn from that class's E − K exemplars *not* shown in the context
    targets at every query position (scored): the label of the query's class

A query token never appears in the context, so recall of a seen token (MQAR) cannot answer it: the
model must know (from training, in its weights) which exemplars share a class, and read (from the
context) which label this example gave that class. Labels are uniform over the N per example, so
chance is 1/N. Requires E > K (a query needs an unseen exemplar) and 2·N·K < T.
"""
import numpy as np

from .base import GeneratedTask, distinct_choices


class FewShot(GeneratedTask):
    def __init__(self, num_classes=32, exemplars=8, ways=4, shots=1, seq_len=64, test_examples=1000):
        if not (ways >= 2 and num_classes >= ways and exemplars > shots >= 1 and 2 * ways * shots < seq_len):
            raise ValueError(f"few-shot needs ways >= 2, num_classes >= ways, exemplars > shots >= 1 and "
                             f"2·ways·shots < seq_len; got num_classes {num_classes}, exemplars {exemplars}, "
                             f"ways {ways}, shots {shots}, seq_len {seq_len}")
        self.num_classes, self.exemplars, self.ways, self.shots = num_classes, exemplars, ways, shots
        self.vocab_size, self.seq_len, self.test_examples = num_classes * exemplars + ways, seq_len, test_examples
        self.name = f"few-shot-{shots}"

    def sample(self, n, rng):
        C, E, N, K, T = self.num_classes, self.exemplars, self.ways, self.shots, self.seq_len
        rows = np.arange(n)[:, None]
        classes = distinct_choices(rng, n, C, N)                       # (n, N): the example's classes
        labels = C * E + distinct_choices(rng, n, N, N)                # (n, N): class j's label token
        members = distinct_choices(rng, n * N, E, E).reshape(n, N, E)  # a random order of each class's exemplars
        shown, unseen = members[:, :, :K], members[:, :, K:]           # K shown, E − K left for the queries
        order = np.argsort(rng.random((n, N * K)), axis=1)             # the pairs' order in the context
        pair_class = (np.arange(N * K) // K)[order]                    # (n, N·K): which chosen class a pair shows
        pair_exemplar = shown.reshape(n, N * K)[rows, order]
        Q = T - 2 * N * K
        query_class = rng.integers(0, N, (n, Q))
        query_exemplar = unseen[rows, query_class, rng.integers(0, E - K, (n, Q))]
        inputs = np.empty((n, T), np.int64)
        inputs[:, 0:2 * N * K:2] = classes[rows, pair_class] * E + pair_exemplar
        inputs[:, 1:2 * N * K:2] = labels[rows, pair_class]
        inputs[:, 2 * N * K:] = classes[rows, query_class] * E + query_exemplar
        targets, mask = np.zeros((n, T), np.int64), np.zeros((n, T), bool)
        targets[:, 2 * N * K:], mask[:, 2 * N * K:] = labels[rows, query_class], True
        return inputs, targets, mask

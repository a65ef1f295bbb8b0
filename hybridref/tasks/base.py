"""What the tasks share: the training and held-out random streams, and a mixture of tasks.

np.random.default_rng([stream, seed]) seeds a generator from the pair (numpy's SeedSequence), so the
examples a model trains on (stream TRAIN) and those it is scored on (stream HELD_OUT) come from
different entropy for every seed: the held-out examples are freshly generated, not a split of the
training ones."""
import numpy as np

TRAIN, HELD_OUT = 0, 1


def train_rng(seed):
    return np.random.default_rng([TRAIN, seed])


def held_out_rng(seed):
    return np.random.default_rng([HELD_OUT, seed])


def distinct_choices(rng, n, high, k, low=0):
    """(n, k) int64: in each row k distinct integers of [low, high), uniformly (the first k of a random
    permutation of each row, as np.random.choice(..., replace=False))."""
    if not 0 <= k <= high - low:
        raise ValueError(f"cannot draw {k} distinct values from [{low}, {high})")
    return low + np.argsort(rng.random((n, high - low)), axis=1)[:, :k]


class GeneratedTask:
    """A task whose examples come from a seeded generator: held-out examples are test_examples drawn
    from the held-out stream of `seed`."""
    test_examples = 1000

    def test_set(self, seed):
        return self.sample(self.test_examples, held_out_rng(seed))


class Mixture(GeneratedTask):
    """Each batch drawn from one of `tasks` (same vocabulary and length), chosen uniformly: one model
    trained on several settings of a task (Zoology trains MQAR on a mixture of numbers of pairs)."""

    def __init__(self, tasks):
        tasks = list(tasks)
        if not tasks or len({(t.vocab_size, t.seq_len) for t in tasks}) != 1:
            raise ValueError("a mixture needs tasks of one vocabulary size and one sequence length")
        self.tasks = tasks
        self.name = "+".join(t.name for t in tasks)
        self.vocab_size, self.seq_len = tasks[0].vocab_size, tasks[0].seq_len

    def sample(self, n, rng):
        return self.tasks[rng.integers(len(self.tasks))].sample(n, rng)

"""The task generators (hybridref/tasks): shapes, seeding, held-out streams, what each scored position
asks for, the refusals, and a tiny training run that must learn an easy case."""
import os

import numpy as np
import pytest

from hybridref.backends import get_backend
from hybridref.tasks.base import Mixture, distinct_choices, held_out_rng, train_rng
from hybridref.tasks.few_shot import FewShot
from hybridref.tasks.induction_heads import InductionHeads
from hybridref.tasks.mqar import MQAR
from hybridref.tasks.selective_copying import SelectiveCopying
from hybridref.tasks.train import accuracy, build_model, scored_loss, train_task

needs_data = pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")
TASKS = [MQAR(vocab_size=64, seq_len=32, num_pairs=4), SelectiveCopying(vocab_size=8, seq_len=24, n_memorize=4),
         InductionHeads(vocab_size=8, seq_len=20), FewShot(num_classes=8, exemplars=4, ways=3, shots=2, seq_len=20)]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_shapes_and_seeding(task):
    inputs, targets, mask = task.sample(50, train_rng(3))
    assert inputs.shape == targets.shape == mask.shape == (50, task.seq_len)
    assert inputs.dtype == targets.dtype == np.int64 and mask.dtype == bool
    assert 0 <= inputs.min() and inputs.max() < task.vocab_size and targets.max() < task.vocab_size
    assert (targets[~mask] == 0).all() and mask.any(axis=1).all()
    again = task.sample(50, train_rng(3))
    assert all((a == b).all() for a, b in zip((inputs, targets, mask), again))
    other = task.sample(50, train_rng(4))
    assert not (inputs == other[0]).all()


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_held_out_examples_are_fresh(task):
    """No held-out example of a seed is one of the training examples of that seed's stream."""
    train = {row.tobytes() for row in task.sample(500, train_rng(0))[0]}
    held = task.test_set(0)[0]
    assert len(held) == task.test_examples
    assert not any(row.tobytes() in train for row in held)
    assert (held == task.test_set(0)[0]).all() and not (held == task.sample(len(held), held_out_rng(1))[0]).all()


def test_mqar_queries_ask_for_their_pairs_value():
    V, T, P = 64, 32, 4
    inputs, targets, mask = MQAR(V, T, P).sample(200, train_rng(0))
    for x, y, m in zip(inputs, targets, mask):
        keys, values = x[0:2 * P:2], x[1:2 * P:2]
        assert len(set(keys)) == P and ((1 <= keys) & (keys < V // 2)).all()
        assert len(set(values)) == P and ((V // 2 <= values) & (values < V)).all()
        where = np.flatnonzero(m)
        assert len(where) == P and (where >= 2 * P).all() and ((where - 2 * P) % 2 == 0).all()
        assert sorted(x[where]) == sorted(keys)  # every key queried once
        pair = dict(zip(keys, values))
        assert all(y[t] == pair[x[t]] for t in where)


def test_mqar_power_law_favours_short_gaps():
    """a = 0.01 puts most queries right after the pairs; a = 1 spreads them uniformly."""
    def mean_gap(a):
        _, _, mask = MQAR(512, 256, 4, power_a=a).sample(300, train_rng(0))
        return (np.nonzero(mask)[1] - 8).mean() / 2
    slots = (256 - 8) // 2
    assert mean_gap(0.01) < 0.25 * slots and abs(mean_gap(1.0) - (slots - 1) / 2) < 0.1 * slots


def test_selective_copying_asks_for_the_data_tokens_in_order():
    A, T, M = 8, 24, 4
    inputs, targets, mask = SelectiveCopying(A, T, M).sample(100, train_rng(0))
    assert (mask[:, T - M:]).all() and not mask[:, :T - M].any()
    assert (inputs[:, T - M:] == A - 1).all()
    for x, y in zip(inputs, targets):
        body = x[:T - M]
        assert (body[body != 0] == y[T - M:]).all() and ((1 <= y[T - M:]) & (y[T - M:] < A - 1)).all()
    positions = [tuple(np.flatnonzero(x[:T - M])) for x in inputs]
    assert len(set(positions)) > 50  # the data tokens move: it is the selective task


def test_induction_heads_asks_for_the_token_after_the_special_one():
    V, T = 8, 20
    inputs, targets, mask = InductionHeads(V, T).sample(100, train_rng(0))
    assert mask[:, -1].all() and mask.sum() == 100
    for x, y in zip(inputs, targets):
        special = np.flatnonzero(x == V - 1)
        assert len(special) == 2 and special[1] == T - 1 and special[0] < T - 2
        assert y[-1] == x[special[0] + 1] != V - 1


def test_few_shot_queries_are_unseen_exemplars_of_a_shown_class():
    """Every query is an exemplar of one of the example's N classes that the context does not show, its
    target the label the context gave that class; the labels are a fresh bijection in each example."""
    C, E, N, K, T = 8, 4, 3, 2, 20
    inputs, targets, mask = FewShot(C, E, N, K, T).sample(300, train_rng(0))
    assert (mask[:, 2 * N * K:]).all() and not mask[:, :2 * N * K].any()
    bijections = set()
    for x, y in zip(inputs, targets):
        shown, labels = x[0:2 * N * K:2], x[1:2 * N * K:2]
        assert (shown < C * E).all() and ((C * E <= labels) & (labels < C * E + N)).all()
        label_of = {}
        for token, label in zip(shown, labels):
            label_of.setdefault(token // E, set()).add(label)
        assert len(label_of) == N and all(len(v) == 1 for v in label_of.values())  # N classes, one label each
        assert len({next(iter(v)) for v in label_of.values()}) == N and len(set(shown)) == N * K
        assert all(np.bincount(shown // E, minlength=C)[c] == K for c in label_of)  # K shots per class
        for q, want in zip(x[2 * N * K:], y[2 * N * K:]):
            assert q not in shown and label_of[q // E] == {want}
        bijections.add(tuple(sorted((c, next(iter(v))) for c, v in label_of.items())))
    # classes and labels drawn afresh per example: 300 uniform draws of 8·7·6 = 336 bijections give ~199
    # distinct ones; a generator that fixed the labels per class set would give at most 56
    assert len(bijections) > 150


@pytest.mark.parametrize("make, message", [
    (lambda: MQAR(64, 33, 4), "even seq_len"), (lambda: MQAR(32, 32, 4), "vocab_size > seq_len"),
    (lambda: MQAR(64, 32, 9), "4·num_pairs"), (lambda: SelectiveCopying(8, 7, 4), "seq_len >= 2·n_memorize"),
    (lambda: InductionHeads(2, 16), "vocab_size >= 3"), (lambda: FewShot(exemplars=4, shots=4), "exemplars > shots"),
    (lambda: FewShot(ways=4, shots=8, seq_len=64), "2·ways·shots < seq_len"),
    (lambda: Mixture([MQAR(64, 32, 4), MQAR(128, 32, 4)]), "one vocabulary size"),
])
def test_bad_settings_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_distinct_choices():
    draws = distinct_choices(np.random.default_rng(0), 100, 10, 4, low=3)
    assert all(len(set(row)) == 4 for row in draws) and draws.min() >= 3 and draws.max() < 13
    with pytest.raises(ValueError, match="cannot draw 5 distinct"):
        distinct_choices(np.random.default_rng(0), 1, 4, 5)


def test_mixture_draws_every_task():
    mixture = Mixture([MQAR(64, 32, 2), MQAR(64, 32, 4)])
    rng = train_rng(0)
    counts = {int(mixture.sample(2, rng)[2].sum()) for _ in range(20)}
    assert counts == {4, 8}  # 2 examples of 2 or of 4 queries


def test_scored_loss_is_the_cross_entropy_of_the_scored_positions():
    be = get_backend("numpy")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, 7)).astype(np.float32)
    targets, mask = rng.integers(0, 7, (2, 5)), np.zeros((2, 5), bool)
    mask[0, 1] = mask[1, 4] = True
    loss, dlogits = scored_loss(be, logits, targets, mask)
    rows = logits[mask].astype(np.float64)
    want = np.mean(np.log(np.exp(rows).sum(axis=1)) - rows[np.arange(2), targets[mask]])
    assert loss == pytest.approx(want, rel=1e-6)  # float64 sums in the kernel and here
    assert (dlogits[~mask] == 0).all() and np.allclose(dlogits[mask].sum(axis=1), 0, atol=1e-6)


def test_training_learns_an_easy_copy():
    """Copy the previous token (selective copying of one token in a sequence of two): 4 data tokens,
    chance 25 %; an untrained model is near chance, 60 steps of a 2-layer attention model reach 90 %+."""
    get_backend("c").set_threads(1)
    task = SelectiveCopying(vocab_size=6, seq_len=2, n_memorize=1, test_examples=200)
    model = build_model(task, "AA", 32)
    before = accuracy(model, task.test_set(0))
    out = train_task(model, task, steps=60, batch_size=32, lr=3e-3)
    assert before < 0.6 and out["accuracy"]["selective-copying"] >= 0.9
    assert out["steps"] == 60 and out["test_positions"] == {"selective-copying": 200} and out["tokens_per_s"] > 0


def test_time_budget_stops_training():
    task = InductionHeads(8, 16, test_examples=8)
    out = train_task(build_model(task, "M", 16), task, steps=10 ** 6, batch_size=2, time_budget=0.05)
    assert 1 <= out["steps"] < 10 ** 6 and out["train_time_s"] >= 0.05


@needs_data
def test_sequential_mnist():
    from hybridref.data.mnist import load_mnist
    from hybridref.tasks.sequential_mnist import SequentialMNIST
    (train_x, train_y), (test_x, test_y) = load_mnist()
    plain = SequentialMNIST(train_images=100, test_images=50)
    inputs, targets, mask = plain.test_set()
    assert inputs.shape == (50, 784) and (inputs == test_x[:50].reshape(50, 784)).all()
    assert mask[:, -1].all() and mask.sum() == 50 and (targets[:, -1] == test_y[:50]).all()
    permuted = SequentialMNIST(permuted=True, train_images=100, test_images=50)
    assert sorted(permuted.order) == list(range(784)) and (permuted.order != np.arange(784)).any()
    assert (permuted.order == SequentialMNIST(permuted=True, train_images=1, test_images=1).order).all()
    assert (np.sort(permuted.test_x, axis=1) == np.sort(inputs, axis=1)).all()
    x, y, m = plain.sample(30, train_rng(0))
    rows = [np.flatnonzero((plain.train_x == row).all(axis=1))[0] for row in x]
    assert len(set(rows)) == 30 and (y[:, -1] == train_y[rows]).all()

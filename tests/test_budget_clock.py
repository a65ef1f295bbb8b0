"""--budget-clock: a training budget counted on the wall clock or on the process's CPU time.

The clocks are replaced by counters that advance one second a reading, so the step at which a run stops
is known exactly; that the "cpu" clock is time.process_time is checked by name."""
import time

import pytest

from hybridref import clock
from hybridref.errors import UserError
from hybridref.train_mnist import train_mnist
from hybridref.train_shakespeare import train_shakespeare

TINY = dict(d_model=16, n_heads=2, d_state=4)


def counting_clock():
    """A clock that reads 0, 1, 2, ... seconds, one second a reading."""
    readings = iter(range(10 ** 6))
    return lambda: float(next(readings))


@pytest.fixture
def fake_clocks(monkeypatch):
    monkeypatch.setitem(clock.BUDGET_CLOCKS, "cpu", counting_clock())
    monkeypatch.setitem(clock.BUDGET_CLOCKS, "wall", lambda: 0.0)  # a wall budget would never run out


def test_the_cpu_clock_is_process_time():
    assert clock.budget_clock("cpu") is time.process_time
    assert clock.budget_clock("wall") is time.perf_counter
    with pytest.raises(UserError, match="unknown budget clock 'gpu': choose one of wall, cpu"):
        clock.budget_clock("gpu")


def test_shakespeare_stops_on_its_budget_clock(fake_clocks, corpus, cb):
    kw = dict(arch="hybrid", steps=50, batch_size=2, block_size=16, warmup=2, eval_every=100, eval_batches=1,
              data_dir=corpus, model_overrides=dict(pattern="MA", **TINY), time_budget=3)
    out = train_shakespeare(cb, budget_clock="cpu", **kw)  # 2 readings a step (start, end): a step takes 1 s
    assert out["steps"] == 3 and out["train_time_s"] == 3.0
    assert out["config"]["budget_clock"] == "cpu"
    assert train_shakespeare(cb, budget_clock="wall", **{**kw, "steps": 4})["steps"] == 4


def test_mnist_stops_on_its_budget_clock(fake_clocks, cb):
    """One reading at the epoch's start, one after each step: step s ends at s seconds, and the run stops
    after the step that passes the budget (4 > 3)."""
    out = train_mnist(cb, epochs=2, batch_size=32, subset=256, d_model=16, pattern="MA", time_budget=3,
                      budget_clock="cpu")
    assert out["history"][-1]["steps"] == 4

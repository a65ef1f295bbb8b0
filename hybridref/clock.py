"""The clock a training budget (--time-budget) counts on, chosen by --budget-clock.

    wall  time.perf_counter   seconds of the wall clock (the default)
    cpu   time.process_time   CPU seconds of this process, all its threads together

On a machine whose cores other jobs share, a wall-clock budget gives a run the steps the other jobs
leave it, so two runs with the same budget taken at different loads are not comparable. CPU seconds
count what the run itself computed: with one thread on an idle machine they equal wall seconds, with N
busy threads N times them. Caches and memory bandwidth shared with the other jobs still make a CPU
second of a loaded machine do somewhat less work, so a CPU budget narrows the gap, not closes it.
"""
import time

from .errors import UserError

BUDGET_CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def budget_clock(name):
    """The clock function (seconds, float) of the budget clock `name`."""
    if name not in BUDGET_CLOCKS:
        raise UserError(f"unknown budget clock {name!r}: choose one of {', '.join(BUDGET_CLOCKS)}")
    return BUDGET_CLOCKS[name]

"""Timing helpers of the experiments (wall clock, time.perf_counter)."""
import math
import statistics
import time

MOST_CALLS = 5


def timed(run, min_s, setup=None):
    """(median seconds of run(), calls timed). A first call of min_s or more is the only one (it is also the
    warm-up: at that size one more call costs more than a cold start skews); a shorter one is a warm-up,
    then calls are repeated until about min_s has passed, at most MOST_CALLS. With `setup`, each call is
    run(setup()), setup untimed."""
    def once():
        args = (setup(),) if setup else ()
        start = time.perf_counter()
        run(*args)
        return time.perf_counter() - start

    first = once()
    if first >= min_s:
        return first, 1
    times = [once() for _ in range(min(MOST_CALLS, max(1, math.ceil(min_s / max(first, 1e-9)))))]
    return statistics.median(times), len(times)


def median_step_s(decoder, tokens):
    """Median seconds of decoder.step over `tokens` (n, batch): one step per row, each timed alone."""
    times = []
    for token in tokens:
        start = time.perf_counter()
        decoder.step(token)
        times.append(time.perf_counter() - start)
    return statistics.median(times)

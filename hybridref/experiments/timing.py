"""Timing helpers of the experiments: the wall clock (time.perf_counter) and the CPU time of the process
(time.process_time, all its threads). With one thread, on a machine shared with other jobs, the CPU
time is the cost of the work itself; the wall clock adds the time the process waited for a core."""
import math
import statistics
import time

MOST_CALLS = 5


def _clocks():
    return time.perf_counter(), time.process_time()


def timed(run, min_s, setup=None):
    """(median wall seconds, median CPU seconds, calls timed) of run(). A first call of min_s or more (wall)
    is the only one (it is also the warm-up: at that size one more call costs more than a cold start
    skews); a shorter one is a warm-up, then calls are repeated until about min_s has passed, at most
    MOST_CALLS. With `setup`, each call is run(setup()), setup untimed."""
    def once():
        args = (setup(),) if setup else ()
        wall, cpu = _clocks()
        run(*args)
        wall_end, cpu_end = _clocks()
        return wall_end - wall, cpu_end - cpu

    first = once()
    if first[0] >= min_s:
        return first[0], first[1], 1
    times = [once() for _ in range(min(MOST_CALLS, max(1, math.ceil(min_s / max(first[0], 1e-9)))))]
    return statistics.median(w for w, _ in times), statistics.median(c for _, c in times), len(times)


def median_step_s(decoder, tokens):
    """(median wall seconds, median CPU seconds) of decoder.step over `tokens` (n, batch): one step per
    row, each timed alone."""
    times = []
    for token in tokens:
        wall, cpu = _clocks()
        decoder.step(token)
        wall_end, cpu_end = _clocks()
        times.append((wall_end - wall, cpu_end - cpu))
    return statistics.median(w for w, _ in times), statistics.median(c for _, c in times)

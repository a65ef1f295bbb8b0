"""Memory of a cell, measured and counted.

Measured: the peak resident set of the cell's own process, Linux's VmHWM (/proc/self/status). The
runner gives every cell a fresh process, and `PeakRSS` resets the high-water mark to the current
resident set (writing 5 to /proc/self/clear_refs) before each phase of a cell, so each phase
(training, prefill, decoding) gets its own peak. It includes everything resident: the interpreter,
NumPy, the C library, the model and what the phase allocates. Linux counts a thread's resident pages
in batches and VmHWM is the larger of the recorded peak and the current count, so a figure is exact to
a few hundred KiB, and a later read of VmHWM can be that much lower than an earlier one: the
process's peak is the largest figure read.

Counted: the model's own bytes, from the arrays it holds: parameters, gradients, optimizer state
(AdamW's m and v), the activations kept for backward (the arrays on every module's saved stack
after a forward, each buffer once) and the arrays of the decoder's states.
"""
import gc

import numpy as np

from ..errors import UserError

_STATUS, _CLEAR_REFS = "/proc/self/status", "/proc/self/clear_refs"
_highest = 0  # the peak before the last reset


def _status_bytes(field):
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    raise UserError(f"cannot read {field} from {_STATUS}: the experiments measure memory with Linux's process "
                    f"status, run them on Linux")


def rss_bytes():
    """The process's resident set now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes():
    """The process's peak resident set since it started or since the last reset."""
    return _status_bytes("VmHWM")


def process_peak_rss_bytes():
    """The process's peak resident set since it started, resets included."""
    return max(_highest, peak_rss_bytes())


def reset_peak_rss():
    """Set the peak resident set to the current one (after collecting garbage, so that arrays of an
    earlier phase no longer count); the peak before is kept for process_peak_rss_bytes."""
    global _highest
    _highest = max(_highest, peak_rss_bytes())
    gc.collect()
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError as e:
        raise UserError(f"cannot reset the peak resident set ({_CLEAR_REFS}: {e}): the experiments need a Linux "
                        f"kernel of version 4.0 or later that lets a process write its clear_refs") from None


class PeakRSS:
    """`with PeakRSS() as peak: ...` -> peak.bytes, the peak resident set while the block ran, and
    peak.start_bytes, the resident set when it began."""

    def __enter__(self):
        reset_peak_rss()
        self.start_bytes = rss_bytes()
        return self

    def __exit__(self, *exc):
        global _highest
        self.bytes = peak_rss_bytes()
        _highest = max(_highest, self.bytes)  # a later VmHWM can read a little lower (see the module's note)
        return False


def _buffer(a):
    """The array that owns a view's memory."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _arrays(value, seen):
    """The ndarrays in `value`: tuples, lists, dicts and plain objects (a SideInputs) walked, each once."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item, seen)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _arrays(item, seen)
    elif hasattr(value, "__dict__") and not isinstance(value, type) and not hasattr(value, "_saved"):
        yield from _arrays(vars(value), seen)  # not a Module: those hold parameters, not activations


def _buffer_bytes(values):
    """Bytes of the arrays in `values`, each memory buffer counted once (a view keeps its whole buffer alive)."""
    buffers, seen = {}, set()
    for a in _arrays(values, seen):
        owner = _buffer(a)
        buffers[id(owner)] = owner.nbytes
    return sum(buffers.values())


def saved_bytes(model):
    """Bytes of the activations a forward kept for backward: every array on the saved stacks of the
    model's modules."""
    return _buffer_bytes([m._saved for m in model.modules()])


def batch_saved_bytes(model, ids):
    """saved_bytes after a forward over the batch `ids` (B,T); the saved arrays are released after."""
    model.forward(ids)
    kept = saved_bytes(model)
    model.clear_saved()
    return kept


def decoder_state_bytes(decoder):
    """Bytes of the states a decoder holds (KV caches, recurrent states, Hyena's input history and filter),
    from its arrays as allocated."""
    return _buffer_bytes(decoder.states)


def param_bytes(model):
    return sum(p.data.nbytes for p in model.params())


def optimizer_bytes(opt):
    """AdamW's state: its first and second moments."""
    return sum(m.nbytes + v.nbytes for m, v in zip(opt.m, opt.v))

"""The base class of sequence mixers: what every registered mixer shares (registry.py registers
it; tests/test_mixer_conformance.py checks it).

A mixer maps u (B,T,D) -> (B,T,D) along the sequence and implements
    forward(u, state=None, side=None)   the parallel form; with a decode state it starts from that
                                        state and leaves it at the end of u (prefill, in chunks too)
    backward(dy)                        gradient of u; parameter gradients are added to their Params
    init_state(batch, max_len, dtype)   a fresh decode state (a dict of arrays)
    step(u_t, state, side=None)         one token per stream, u_t (B,D) -> (B,D), state advanced
`side` is the pass's SideInputs (side.py), for mixers that read or produce a cross-layer input.

A mixer whose output at position t reads only positions <= t is `causal` (every mixer unless it says
otherwise). A non-causal one (a Mamba with directions > 1, for images) refuses init_state, step and
a forward from a state, and the conformance suite skips its causal checks (chunked prefill, decoding).
"""
import numpy as np

from .module import Module


class Mixer(Module):
    causal = True  # output t reads positions <= t only (a property where an option decides it)
    # the block normalises the mixer's input (norm₁); False: the mixer reads the residual stream itself (block.py)
    pre_norm = True

    def __init__(self, d):
        super().__init__()
        self.d_model = d

    def check_input(self, u, ndim=3):
        """u must be a float array of shape (B,T,D) (ndim 3) or (B,D) (ndim 2, a decode step)."""
        want = "(B, T, {})".format(self.d_model) if ndim == 3 else "(B, {})".format(self.d_model)
        if not isinstance(u, np.ndarray) or u.ndim != ndim or u.shape[-1] != self.d_model or min(u.shape) < 1:
            got = f"shape {u.shape}" if isinstance(u, np.ndarray) else type(u).__name__
            raise ValueError(f"{self.mixer_name}: input must be an array of shape {want}, got {got}")
        if u.dtype not in (np.float32, np.float64):
            raise ValueError(f"{self.mixer_name}: input must be float32 (or float64 on the numpy backend), "
                             f"got {u.dtype}")

"""Streaming decoding, the readable oracle: the layer-by-layer decoder (each layer's `step` in
Python, every op through the model's backend).

The C backend's decoder (backends/c/decode.py) has the same interface and runs the whole step in one
C call; this one is the reference it is tested against, and the fallback for any backend without
its own decoder.
"""
import numpy as np


class Decoder:
    """Decodes `batch` independent streams of a CharLM, all at the same position, up to max_len tokens.

    prefill(ids (B,T)) -> logits (B,V) of the last prompt token; step(ids (B,)) -> logits (B,V) of
    the next position. Works on any backend: each layer's step runs through model.be."""

    def __init__(self, model, batch, max_len):
        self.model, self.batch, self.max_len = model, batch, max_len
        self.states = model.init_state(batch, max_len, model.head.weight.data.dtype)
        self.pos = 0

    def _check_ids(self, ids, ndim):
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.ndim != ndim or ids.shape[0] != self.batch:
            raise ValueError(f"decoder: ids must have shape ({self.batch}{', T' if ndim == 2 else ''}) "
                             f"(one row per stream), got {ids.shape}")
        V = self.model.vocab_size
        if ids.size and (ids.min() < 0 or ids.max() >= V):
            raise ValueError(f"decoder: token ids must lie in [0, {V}), got {ids.min()}..{ids.max()}")
        return ids

    def _check_room(self, n):
        if self.pos + n > self.max_len:
            raise ValueError(f"decoder: the context holds {self.max_len} tokens (max_len) and has {self.pos}; "
                             f"{n} more do not fit — create the decoder with a larger max_len")

    def prefill(self, ids):
        """Run the prompt through the parallel forward (a fresh decoder only); -> logits (B,V) at its last token."""
        ids = self._check_ids(ids, 2)
        if self.pos:
            raise ValueError(f"decoder: prefill starts a fresh decoder; this one is at position {self.pos}")
        self._check_room(ids.shape[1])
        logits = self.model.prefill(ids, self.states)
        self.pos = ids.shape[1]
        return logits[:, -1]

    def step(self, ids):
        """Feed one token per stream; -> logits (B,V) of the following token."""
        ids = self._check_ids(ids, 1)
        self._check_room(1)
        logits = self.model.step(ids, self.states)
        self.pos += 1
        return logits

"""Streaming decoding, the readable oracle: the layer-by-layer decoder (each layer's `step` in
Python, every op through the model's backend).

The C backend's decoder (backends/c/decode.py) has the same interface and runs the whole step in one
C call; this one is the reference it is tested against, and the fallback for any backend without
its own decoder.
"""
import numpy as np

from hybridref.errors import UserError

from ..validate import check_int
from .sample import check_sampling, sample


def check_weights(weights):
    """This decoder runs the model's own float32 weights: refuse any other `weights` option by name."""
    if weights != "f32":
        raise ValueError(f"decoder: weights={weights!r}: the layer-by-layer decoder runs the float32 weights "
                         f"(weights='f32'); bfloat16 weight matrices (weights='bf16') are an option of the C "
                         f"backend's decoder")


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

    def _check_generate(self, logits, n, final, seed, temperature, top_k, top_p):
        """The arguments of generate, checked and converted: (logits float32 (B,V), n, final, seed,
        temperature, top_k, top_p)."""
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        if logits.shape != (self.batch, self.model.vocab_size):
            raise ValueError(f"decoder: logits must have shape ({self.batch}, {self.model.vocab_size}) (one row per "
                             f"stream), got {logits.shape}")
        n = check_int("generate", "n", n, 1)
        seed, temperature, top_k, top_p = check_sampling(seed, temperature, top_k, top_p)
        self._check_room(n - 1 if final else n)
        return logits, n, bool(final), seed, temperature, top_k, top_p

    @staticmethod
    def _refuse_nonfinite():
        raise UserError("the model computed non-finite logits: its weights overflow on this input; "
                        "use a checkpoint from before training diverged")

    def generate(self, logits, n, seed, temperature=1.0, top_k=0, top_p=1.0, final=True):
        """The token loop: n tokens per stream, each sampled from logits (B,V) (backends/numpy/sample.py: the
        draw of stream b at position p uses uniform(seed, b, p), p counting the model's meta tokens as the C
        decoder's positions do) and fed back by a step. final: the last
        token is not fed (the run ends there). -> (tokens int64 (B,n), the logits after the last token fed,
        or None when final)."""
        logits, n, final, seed, temperature, top_k, top_p = self._check_generate(logits, n, final, seed, temperature,
                                                                                 top_k, top_p)
        tokens = np.empty((self.batch, n), dtype=np.int64)
        for i in range(n):
            ids = sample(logits, np.full(self.batch, self.pos + self.model.meta_tokens), seed, temperature, top_k,
                         top_p)
            if (ids < 0).any():
                self._refuse_nonfinite()
            tokens[:, i] = ids
            if not (final and i == n - 1):
                logits = self.step(ids)
        return tokens, None if final else logits

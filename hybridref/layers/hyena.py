"""The Hyena operator (Poli et al. 2023; HazyResearch safari's HyenaOperator and HyenaFilter), order N:

    z          = conv1d_3(W_in u + b_in)                   depthwise causal, width 3, with bias: (B,T,(N+1)D)
    x_0 … x_{N−1}, v = the N+1 slices of width D of z
    for o = 0 … N−2 (safari's order of use: x_{N−1} first, x_1 last):
        w = v ⊙ x_{N−1−o}
        v = h_o ∗ w + bias_o ⊙ w                           causal long convolution (the long_conv op)
    y          = W_out (v ⊙ x_0) + b_out

The long filters h (l_max, (N−1)·D) are implicit: an MLP with sine activations over a positional
encoding of the position, times an exponential decay window:

    p(t)  = [t/(l_max−1), cos(f_k ω_t), −sin(f_k ω_t)]      ω_t = 2π t / l_max, f_k = linspace(1e-4, K−1, K),
                                                            K = (emb_dim−1)/2 bands (safari's PositionalEmbedding)
    k(t)  = W_4 sin(φ ⊙ (… sin(φ ⊙ (W_1 p(t) + b_1)) …))    num_inner_mlps hidden layers of filter_order,
                                                            one learned frequency φ shared by all (safari's Sin)
    h(t)  = k(t) ⊙ (exp(−t/(l_max−1) · |δ|) + shift)       δ = linspace(ln(1e-2)/slow, ln(1e-2)/fast)
                                                            (safari's ExponentialModulation, not trained)

Filter length: the encoding normalises the position by the fixed l_max, not by the length T being
processed (safari computes it over l_max and takes its first T rows), so h(t) does not depend on T:
the parallel forward of any T <= l_max and step-by-step decoding use the same filter values. A
sequence (or a decode state) longer than l_max is refused. The MLP runs over all l_max positions on
every forward (its linears through the backend; the sines and the window, l_max × filter_order
values independent of the batch, in NumPy); the filter, the MLP weights and φ are trained (the
gradient of h comes back from the long convolution), the encoding and δ are fixed (safari trains
them with learning rates 1e-5 and 0).

The long convolution gets the whole l_max filter, so a process of the MPI backend holding a slice of
the sequence receives the l_max − 1 positions before it (zeros before the sequence) through the
op's halo and sees every earlier position; dh is a partial sum there, and so are the MLP's
gradients. The layer cannot see the global length on such a backend: keep T <= l_max.

Init (safari / torch defaults): W_in, W_out, the MLP's weights U(±1/√fan_in) (W_out N(0, out_std²)
when the model sets out_std), biases 0; conv U(±1/√3) weight and bias; bias_o ~ N(0, 1); φ = sin_freq.

Decoding: the state is the last 2 conv inputs conv (B, 2, (N+1)D), the inputs w of every long
convolution so far, hist (N−1, B, max_len, D) (row p: position p), the position `pos`, and the
filter h (max_len rows), computed once by init_state from the current weights. A step reads pos + 1
rows of each history: its cost grows with the position (O(t) per token, as attention's).
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Param
from .registry import register_mixer


def positional_encoding(l_max, emb_dim):
    """p (l_max, emb_dim) and the normalised time t (l_max,): [t, cos(f_k ω), −sin(f_k ω)] as safari's
    PositionalEmbedding (t = linspace(0, 1, l_max), ω = 2π·position/l_max, f = linspace(1e-4, K−1, K))."""
    bands = (emb_dim - 1) // 2
    t = np.linspace(0.0, 1.0, l_max)
    omega = 2 * math.pi * np.arange(l_max) / l_max
    f = np.linspace(1e-4, bands - 1, bands)
    return np.concatenate([t[:, None], np.cos(np.outer(omega, f)), -np.sin(np.outer(omega, f))], axis=1), t


@register_mixer("H", "hyena")
class Hyena(Mixer):
    # safari's Hyena language models use a GPT-style MLP of 4·D; the operator holds 5·D² (order 2) + the filter MLP
    mlp_ratio = 4.0
    test_options = dict(order=3, filter_order=8, emb_dim=5, l_max=24)

    def __init__(self, d, rng, order=2, filter_order=64, emb_dim=3, l_max=1024, num_inner_mlps=2, fast_decay_pct=0.3,
                 slow_decay_pct=1.5, shift=0.0, sin_freq=1.0, out_std=None):
        super().__init__(d)
        if order < 2:
            raise ValueError(f"hyena: order must be >= 2 (one long convolution per order above 1), got {order}")
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"hyena: emb_dim must be odd and >= 3 (time, then cosines and sines), got {emb_dim}")
        if l_max < 1 or filter_order < 1 or num_inner_mlps < 0:
            raise ValueError(f"hyena: l_max and filter_order must be >= 1 and num_inner_mlps >= 0, got "
                             f"{l_max}, {filter_order}, {num_inner_mlps}")
        self.order, self.l_max = order, l_max
        width = (order + 1) * d
        self.in_proj = Linear(d, width, rng=rng)
        bound = 1.0 / math.sqrt(3)
        self.conv_weight = Param(rng.uniform(-bound, bound, (width, 3)))
        self.conv_bias = Param(rng.uniform(-bound, bound, width), decay=False)
        self.filter_mlp = [Linear(emb_dim, filter_order, rng=rng)]
        self.filter_mlp += [Linear(filter_order, filter_order, rng=rng) for _ in range(num_inner_mlps)]
        self.filter_mlp.append(Linear(filter_order, (order - 1) * d, bias=False, rng=rng))
        self.freq = Param(np.full(filter_order, float(sin_freq)), decay=False)
        self.filter_bias = Param(rng.standard_normal((order - 1) * d), decay=False)
        self.out_proj = Linear(d, d, rng=rng, std=out_std)
        self.pos_enc, t = positional_encoding(l_max, emb_dim)
        deltas = np.linspace(math.log(1e-2) / slow_decay_pct, math.log(1e-2) / fast_decay_pct, (order - 1) * d)
        self.window = np.exp(-np.outer(t, np.abs(deltas))) + shift  # (l_max, (N−1)D)

    # -- the implicit filter ----------------------------------------------------
    def filter_forward(self, save=True):
        """h (l_max, (N−1)·D): the MLP over the positional encoding, times the decay window (with save=False
        nothing is kept for filter_backward)."""
        dtype = self.freq.data.dtype
        s = self.pos_enc.astype(dtype)
        pre = []
        for lin in self.filter_mlp[:-1]:
            a = lin.forward(s) if save else lin.step(s)
            pre.append(a)
            s = np.sin(self.freq.data * a)
        k = self.filter_mlp[-1].forward(s) if save else self.filter_mlp[-1].step(s)
        if save:
            self.save(pre)
        return k * self.window.astype(dtype)

    def filter_backward(self, dh):
        """Adds the gradients of the MLP's weights and φ, given dh (l_max, (N−1)·D)."""
        (pre,) = self.saved()
        ds = self.filter_mlp[-1].backward(dh * self.window.astype(dh.dtype))
        for lin, a in zip(reversed(self.filter_mlp[:-1]), reversed(pre)):
            cos = np.cos(self.freq.data * a)
            self.freq.grad += (ds * a * cos).sum(axis=0)
            ds = lin.backward(ds * self.freq.data * cos)

    def _filters(self, h):
        """The N−1 filters (l_max, D), contiguous."""
        d = self.d_model
        return [np.ascontiguousarray(h[:, o * d:(o + 1) * d]) for o in range(self.order - 1)]

    def _split(self, z):
        """x_0 … x_{N−1}, v: the slices of width D of the last axis."""
        d = self.d_model
        return [z[..., i * d:(i + 1) * d] for i in range(self.order + 1)]

    # -- the parallel form ----------------------------------------------------------
    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode `state` at position pos, u is positions pos..pos+T−1: the
        short conv starts from the state's inputs and each long convolution reads the state's history,
        and both are left at the end of u (a prefill, in one piece or in chunks)."""
        self.check_input(u)
        be, T = self.be, u.shape[1]
        pos = 0 if state is None else state["pos"]
        rows = self.l_max if state is None else min(self.l_max, state["hist"].shape[2])
        if pos + T > rows:
            raise ValueError(f"hyena: positions {pos}..{pos + T - 1} are past the filter length l_max = {self.l_max}"
                             + ("" if state is None else f" or the decode state's max_len {state['hist'].shape[2]}"))
        z = self.in_proj.forward(u)
        conv_prefix = state["conv"].copy() if state is not None else None
        zc = be.causal_conv1d_forward(z, self.conv_weight.data, self.conv_bias.data, conv_prefix)
        *xs, v = self._split(zc)
        hs = self._filters(self.filter_forward())
        convs = []  # per long convolution: its inputs v, x, w and the filter and prefix it ran with
        for o, h in enumerate(hs):
            x = xs[self.order - 1 - o]
            w = np.ascontiguousarray(v * x)
            h, prefix = self._history(h, state, o, T)
            convs.append((v, x, w, h, prefix))
            v = be.long_conv_forward(w, h, prefix) + self._bias(o) * w
        if state is not None:
            state["conv"][...] = np.concatenate([state["conv"], z], axis=1)[:, -2:]
            for o, conv in enumerate(convs):
                state["hist"][o, :, pos:pos + T] = conv[2]
            state["pos"] = pos + T
        self.save(z, conv_prefix, convs, v, xs[0])
        return self.out_proj.forward(v * xs[0])

    def _bias(self, o):
        return self.filter_bias.data[o * self.d_model:(o + 1) * self.d_model]

    def _history(self, h, state, o, T):
        """(filter, prefix) of long convolution o: without a state the whole filter and no prefix; at position
        pos of a state, the first pos + T taps (the reach of the chunk's last position back to position 0) and
        the pos + T − 1 positions before the chunk (zeros before position 0, then the state's history)."""
        if state is None:
            return h, None
        pos = state["pos"]
        if pos == 0:
            return np.ascontiguousarray(h[:T]), None
        hist = state["hist"][o, :, :pos]
        before = np.zeros((hist.shape[0], T - 1, hist.shape[2]), hist.dtype)
        return np.ascontiguousarray(h[:pos + T]), np.concatenate([before, hist], axis=1)

    def backward(self, dout):
        z, conv_prefix, convs, v_last, x0 = self.saved()
        be, d = self.be, self.d_model
        dy = self.out_proj.backward(dout)
        dxs = [dy * v_last] + [None] * (self.order - 1)
        dv = dy * x0
        dh = np.zeros((self.l_max, (self.order - 1) * d), dv.dtype)
        for o in reversed(range(self.order - 1)):
            v, x, w, h, prefix = convs[o]
            dv = np.ascontiguousarray(dv)
            dw, dh_o, _ = be.long_conv_backward(dv, w, h, prefix)
            dw += self._bias(o) * dv
            self.filter_bias.grad[o * d:(o + 1) * d] += (dv * w).sum(axis=(0, 1))
            dh[:h.shape[0], o * d:(o + 1) * d] = dh_o
            dxs[self.order - 1 - o] = dw * v
            dv = dw * x
        self.filter_backward(dh)
        dzc = np.ascontiguousarray(np.concatenate(dxs + [dv], axis=-1))
        dz, dcw, dcb, _ = be.causal_conv1d_backward(dzc, z, self.conv_weight.data, True, conv_prefix)
        self.conv_weight.grad += dcw
        self.conv_bias.grad += dcb
        return self.in_proj.backward(dz)

    # -- decoding -------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros at position 0: conv (B, 2, (N+1)D), hist (N−1, B, max_len, D); and the filter's first max_len
        rows, filter (max_len, (N−1)D), from the current weights (a step reads it; a prefill computes its own).
        max_len (default l_max) must be <= l_max."""
        max_len = self.l_max if max_len is None else max_len
        if not 1 <= max_len <= self.l_max:
            raise ValueError(f"hyena: a decode state holds 1 to l_max = {self.l_max} positions, got max_len {max_len}")
        h = self.filter_forward(save=False)
        d, w = self.d_model, (self.order + 1) * self.d_model
        return {"conv": np.zeros((batch, 2, w), dtype), "hist": np.zeros((self.order - 1, batch, max_len, d), dtype),
                "filter": np.ascontiguousarray(h[:max_len], dtype=dtype), "pos": 0}

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); updates state in place. Each long convolution is the op at
        T = 1 with the pos positions before as its prefix, the first pos + 1 filter taps."""
        self.check_input(u, 2)
        be, d, pos = self.be, self.d_model, state["pos"]
        if pos >= state["hist"].shape[2]:
            raise ValueError(f"hyena: the decode state is full (max_len {state['hist'].shape[2]} positions)")
        z = self.in_proj.step(u)[:, None]
        zc = be.causal_conv1d_forward(z, self.conv_weight.data, self.conv_bias.data, prefix=state["conv"])
        state["conv"][...] = np.concatenate([state["conv"], z], axis=1)[:, -2:]
        *xs, v = self._split(zc)
        for o in range(self.order - 1):
            w = np.ascontiguousarray(v * xs[self.order - 1 - o])
            state["hist"][o, :, pos] = w[:, 0]
            h = np.ascontiguousarray(state["filter"][:pos + 1, o * d:(o + 1) * d])
            prefix = np.ascontiguousarray(state["hist"][o, :, :pos]) if pos else None
            v = be.long_conv_forward(w, h, prefix) + self._bias(o) * w
        state["pos"] = pos + 1
        return self.out_proj.step((v * xs[0])[:, 0])

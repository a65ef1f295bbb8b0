"""The op table every backend implements, and the contract of each op.

A backend is an object whose attributes are the ops below. Arrays are
C-contiguous NumPy arrays of float32 (the NumPy backend also accepts float64,
for finite-difference gradient checks); token ids and class targets are int64.
Ops never modify their inputs, except `adamw_step`, which updates its
parameter and moment buffers in place.

Shapes: M rows (any flattening of batch x time), K/N feature widths,
B batch, T time, D width, H query heads, Hk key/value heads, P head dim,
C channels, W conv width, N state size, V vocabulary.

Ops are split by whether they mix information along the sequence axis. A
backend that holds only a contiguous slice of each sequence (the MPI backend)
runs POSITION_WISE_OPS locally and overrides only SEQUENCE_MIXING_OPS, each as
its declared form in SEQUENCE_FORMS (below the tables) says: what crosses a
boundary between slices of the sequence, and in which direction.
"""

POSITION_WISE_OPS = {
    # y = op(a) @ op(b): (M,K) x (K,N) -> (M,N); op transposes when trans_* is set.
    "matmul": "matmul(a, b, trans_a=False, trans_b=False) -> c",
    # y = x wᵀ + b: x (M,K), w (N,K), b (N,) or None -> y (M,N)
    "linear_forward": "linear_forward(x, w, b) -> y",
    # dx = dy w, dw = dyᵀ x, db = Σ_rows dy; db is None when has_bias is False
    "linear_backward": "linear_backward(dy, x, w, has_bias) -> (dx, dw, db)",
    # y[m] = table[ids[m]]: ids int64 (M,), table (V,D) -> (M,D)
    "embedding_forward": "embedding_forward(ids, table) -> y",
    # dtable[v] = Σ_{m: ids[m]=v} dy[m] -> (V,D)
    "embedding_backward": "embedding_backward(dy, ids, vocab_size) -> dtable",
    # y = (x - mean) * rstd * w + b over the last axis: x (M,D) -> y (M,D), mean (M,), rstd (M,)
    "layernorm_forward": "layernorm_forward(x, w, b, eps) -> (y, mean, rstd)",
    "layernorm_backward": "layernorm_backward(dy, x, w, mean, rstd) -> (dx, dw, db)",
    # y = x * rstd * w, rstd = 1/sqrt(mean(x²) + eps): x (M,D) -> y (M,D), rstd (M,)
    "rmsnorm_forward": "rmsnorm_forward(x, w, eps) -> (y, rstd)",
    "rmsnorm_backward": "rmsnorm_backward(dy, x, w, rstd) -> (dx, dw)",
    # tanh approximation: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))), any shape
    "gelu_forward": "gelu_forward(x) -> y",
    "gelu_backward": "gelu_backward(dy, x) -> dx",
    # exact GELU: x Φ(x), Φ(x) = ½ erfc(−x/√2) the standard normal CDF (torch's GELU), any shape
    "gelu_erf_forward": "gelu_erf_forward(x) -> y",
    "gelu_erf_backward": "gelu_erf_backward(dy, x) -> dx",
    # x σ(x), any shape
    "silu_forward": "silu_forward(x) -> y",
    "silu_backward": "silu_backward(dy, x) -> dx",
    # gate: y = x ⊙ z σ(z), x and z of one shape
    "silu_gate_forward": "silu_gate_forward(x, z) -> y",
    "silu_gate_backward": "silu_gate_backward(dy, x, z) -> (dx, dz)",
    # log(1 + eˣ) (= x for x > 20, as torch), any shape
    "softplus_forward": "softplus_forward(x) -> y",
    "softplus_backward": "softplus_backward(dy, x) -> dx",
    # loss = mean_m -log softmax(logits[m])[targets[m]]: logits (M,C), targets int64 (M,)
    "cross_entropy_forward": "cross_entropy_forward(logits, targets) -> (loss: float, probs (M,C))",
    # dlogits = (probs - onehot(targets)) / M
    "cross_entropy_backward": "cross_entropy_backward(probs, targets) -> dlogits",
    # Σ x² accumulated in float64, over any shape (gradient-norm clipping)
    "sum_squares": "sum_squares(x) -> float",
    # in place, with g = grad * grad_scale:
    # m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²; m̂ = m/(1-β1^step); v̂ = v/(1-β2^step)
    # param -= lr (m̂ / (√v̂ + eps) + weight_decay param)
    "adamw_step": "adamw_step(param, grad, m, v, *, step, lr, beta1, beta2, eps, weight_decay, grad_scale) -> None",
    # ids (B,) int64: row b of logits (B,V) drawn after temperature (0: greedy), top-k (0: all) and top-p (1: all)
    # with the counter-based uniform u(seed, b, positions[b]) (backends/numpy/sample.py); -1: a non-finite row
    "sample": "sample(logits, positions, seed, temperature=1.0, top_k=0, top_p=1.0) -> ids",
    # -- mixture of experts (backends/numpy/moe.py). Router: probs = softmax(logits) (M,E), lse (M,) its
    # log-sum-exp; experts int64 (M,k) the k largest logits per row, descending, ties to the lowest index;
    # weights (M,k) = probs at them, divided by their sum when normalize; stats float64 (2E+2,) = [tokens
    # per expert (E), Σ_m probs[m] (E), M, Σ_m lse²]: sums over the rows, which a backend holding part of
    # the tokens adds over its processes (all_sum) before the balancing losses are formed
    "moe_route_forward": "moe_route_forward(logits, top_k, normalize) -> (experts, weights, probs, lse, stats)",
    # dlogits: the softmax backward of dprobs = (dweights through the weights) + aux_dprobs (E,), plus
    # z_scale lse[m] probs[m] (the gradient of z_scale/2 Σ_m lse²)
    "moe_route_backward": "moe_route_backward(dweights, experts, probs, lse, aux_dprobs, z_scale, normalize) -> dlogits",
    # x (M,D) rows grouped by expert (counting sort): xs[slot_pos[m,j]] = x[m], expert e's rows
    # offsets[e]:offsets[e+1] -> xs (M·k,D), slot_pos int64 (M,k), offsets int64 (E+1,)
    "moe_dispatch_forward": "moe_dispatch_forward(x, experts, n_experts) -> (xs, slot_pos, offsets)",
    # dx[m] = Σ_j dxs[slot_pos[m,j]]
    "moe_dispatch_backward": "moe_dispatch_backward(dxs, slot_pos) -> dx",
    # ys[r] = xs[r] w[e]ᵀ + b[e] for the rows r of expert e: xs (R,K), w (E,N,K), b (E,N) or None -> ys (R,N)
    "moe_expert_linear_forward": "moe_expert_linear_forward(xs, offsets, w, b) -> ys",
    "moe_expert_linear_backward": "moe_expert_linear_backward(dys, xs, offsets, w, has_bias) -> (dxs, dw, db)",
    # y[m] = Σ_j weights[m,j] ys[slot_pos[m,j]]: ys (M·k,D), weights (M,k) -> y (M,D)
    "moe_combine_forward": "moe_combine_forward(ys, slot_pos, weights) -> y",
    "moe_combine_backward": "moe_combine_backward(dy, ys, slot_pos, weights) -> (dys, dweights)",
}

SEQUENCE_MIXING_OPS = {
    # y[b] = mean_t x[b,t]: x (B,T,D) -> (B,D)
    "mean_pool_forward": "mean_pool_forward(x) -> y",
    # dx[b,t] = dy[b] / T -> (B,T,D)
    "mean_pool_backward": "mean_pool_backward(dy, seq_len) -> dx",
    # causal softmax attention, scale 1/√P; q (B,Tq,H,P), k and v (B,Tk,Hk,P), H % Hk == 0
    # (query head h reads kv head h // (H/Hk)). Query i stands at key position
    # i + q_offset (q_offset >= 0; 0 with Tq = Tk is ordinary self-attention).
    # window None: keys j <= i + q_offset; window W: keys i+q_offset-W <= j <= i+q_offset
    # (W+1 keys, recurrentgemma convention); sinks S: keys j < S (the block's first S) are visible to
    # every query i + q_offset >= j whatever the window (attention sinks, Hymba's meta tokens).
    # Returns o (B,Tq,H,P) and lse (B,H,Tq), the
    # log-sum-exp of each score row (o = 0, lse = -inf for a query that sees no key),
    # which is all the backward keeps: it recomputes probabilities in tiles. The backward
    # takes o and lse of the whole key set, so a query block's gradients against
    # several key blocks add up (the MPI backend's ring).
    "attention_forward": "attention_forward(q, k, v, window=None, q_offset=0, sinks=0) -> (o, lse)",
    "attention_backward": "attention_backward(do, q, k, v, o, lse, window=None, q_offset=0, sinks=0) -> (dq, dk, dv)",
    # depthwise causal conv: y[b,t,c] = bias[c] + Σ_{j<W} w[c,j] x̃[b, t-(W-1)+j, c],
    # x̃ = concat(prefix, x) along time; prefix (B,W-1,C) holds the tokens before
    # x (zeros when None). x (B,T,C), w (C,W), bias (C,) or None -> y (B,T,C)
    "causal_conv1d_forward": "causal_conv1d_forward(x, w, bias, prefix=None) -> y",
    # dprefix is None when prefix is None; dbias is None when has_bias is False
    "causal_conv1d_backward": "causal_conv1d_backward(dy, x, w, has_bias, prefix=None) -> (dx, dw, dbias, dprefix)",
    # Mamba S6 scan, per batch b, channel d, state n:
    # h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t,  y_t = C_t · h_t + D x_t,  h_{-1} = h0 (zeros if None)
    # x, delta (B,T,Din); A (Din,N); Bm, Cm (B,T,N); D (Din,); h0 (B,Din,N) or None
    # -> y (B,T,Din), h_last (B,Din,N)
    "selective_scan_forward": "selective_scan_forward(x, delta, A, Bm, Cm, D, h0=None) -> (y, h_last)",
    # dh_last (B,Din,N) or None is the gradient flowing into h_last from later
    # positions; dh0 is None when h0 is None.
    "selective_scan_backward": "selective_scan_backward(dy, x, delta, A, Bm, Cm, D, h0=None, dh_last=None) -> (dx, ddelta, dA, dBm, dCm, dD, dh0)",
    # decayed linear attention (Mamba-2/SSD, RetNet, GLA), per batch b and head h a K×V state:
    # S_t = diag(exp(g_t)) S_{t-1} + k_tᵀ v_t,  o_t = scale · q_t S_t,  S_{-1} = h0 (zeros if None).
    # q, k (B,T,Hq,K), shared by the H/Hq heads of a group (head h reads group h // (H/Hq)); v (B,T,H,V);
    # g (B,T,H,Kg), finite log decays <= 0, Kg = 1 (per head and step: Mamba-2's Δ·A, RetNet's log γ)
    # or K (per key dim: GLA); h0 (B,H,K,V) or None -> o (B,T,H,V), h_last (B,H,K,V). mode "chunk"
    # (quadratic inside chunks of `chunk` positions, recurrent across them), "parallel" (one chunk) or
    # "recurrent" (one position at a time): the same function.
    "linear_attention_forward": "linear_attention_forward(q, k, v, g, scale=1.0, h0=None, chunk=64, mode='chunk') -> (o, h_last)",
    # dq, dk (B,T,Hq,K) summed over the heads of a group; dg of g's shape (Kg = 1: summed over K);
    # dh_last (B,H,K,V) or None flows into h_last; dh0 is None when h0 is None.
    "linear_attention_backward": "linear_attention_backward(do, q, k, v, g, scale=1.0, h0=None, dh_last=None, chunk=64) -> (dq, dk, dv, dg, dh0)",
    # diagonal linear recurrence (Griffin's RG-LRU), per batch b and channel c:
    # h_t = a_t ⊙ h_{t-1} + x_t, h_{-1} = h0 (zeros if None); a, x (B,T,C), h0 (B,C) or None
    # -> h (B,T,C) every state, h_last (B,C)
    "linear_recurrence_forward": "linear_recurrence_forward(a, x, h0=None) -> (h, h_last)",
    # g_t = dh_t + a_{t+1} ⊙ g_{t+1} (+ dh_last at t = T-1): dx_t = g_t, da_t = g_t ⊙ h_{t-1}, dh0 = a_0 ⊙ g_0
    # (None when h0 is None)
    "linear_recurrence_backward": "linear_recurrence_backward(dh, a, x, h0=None, dh_last=None) -> (da, dx, dh0)",
    # RG-LRU gates: r = σ(ga), i = σ(gx), a = exp(−8 r softplus(a_param)), xn = √(1−a²) ⊙ i ⊙ x with the
    # multiplier 1 at the sequence's position 0 (token t stands at time_offset + t, as RoPE's offset).
    # x, gx, ga (B,T,C), a_param (C,) -> a, xn (B,T,C), the inputs of linear_recurrence
    "rglru_gate_forward": "rglru_gate_forward(x, gx, ga, a_param, time_offset=0) -> (a, xn)",
    # d√y/dy bounded by 1000 (recurrentgemma's SqrtBoundDerivative); da_param (C,) summed over B, T
    "rglru_gate_backward": "rglru_gate_backward(da, dxn, x, gx, ga, a_param, time_offset=0) -> (dx, dgx, dga, da_param)",
    # WKV-7 (RWKV-7's generalized delta rule), per batch b and head h a K×V state (fla's layout; RWKV-LM's
    # S is its transpose): h_t = (diag(w_t) + b_tᵀ a_t) h_{t-1} + k_tᵀ v_t, y_t = r_t h_t, h_{-1} = h0
    # (zeros if None). r, w, k, a, b (B,T,H,K), w the decays themselves (RWKV-7 passes a = −κ̂,
    # b = κ̂ ⊙ iclr); v (B,T,H,V); h0 (B,H,K,V) or None -> y (B,T,H,V), h_last (B,H,K,V)
    "wkv7_forward": "wkv7_forward(r, w, k, v, a, b, h0=None) -> (y, h_last)",
    # dh_last (B,H,K,V) or None flows into h_last; dh0 is None when h0 is None
    "wkv7_backward": "wkv7_backward(dy, r, w, k, v, a, b, h0=None, dh_last=None) -> (dr, dw, dk, dv, da, db, dh0)",
    # RWKV token shift: y[b,t,m] = x_t + (x_{t-1} − x_t) ⊙ mu[m], x_{-1} = prefix[:, 0] (zeros if None);
    # x (B,T,C), mu (M,C), prefix (B,1,C) or None -> y (B,T,M,C)
    "token_shift_forward": "token_shift_forward(x, mu, prefix=None) -> y",
    # dmu (M,C); dprefix is None when prefix is None
    "token_shift_backward": "token_shift_backward(dy, x, mu, prefix=None) -> (dx, dmu, dprefix)",
    # long causal depthwise convolution (Hyena's implicit filters): causal_conv1d's sum with a filter as
    # long as the history it should see, stored time-major: y[b,t,c] = Σ_{j<L} h[j,c] ũ[b, t+L−1−j, c],
    # ũ = concat(prefix, u) along time; prefix (B,L-1,C) holds the L-1 positions before u (zeros when
    # None). u (B,T,C), h (L,C), any L >= 1 (L >= T: every output sees the whole sequence) -> y (B,T,C)
    "long_conv_forward": "long_conv_forward(u, h, prefix=None) -> y",
    # dh (L,C) summed over the batch; dprefix is None when prefix is None
    "long_conv_backward": "long_conv_backward(dy, u, h, prefix=None) -> (du, dh, dprefix)",
    # y = x ⊙ keep / (1 − p), x (B,T,...): inverted dropout whose mask is a hash of (seed, batch row
    # batch_offset + b, position time_offset + t, feature), the same on every backend
    # (backends/numpy/dropout.py). Position-wise in what it computes, but its mask depends on the
    # absolute row and position, so a backend holding a slice of the batch or the sequence adds
    # its slice's start to the offsets. Linear with a fixed mask: dx = dropout(dy, p, seed, ...).
    "dropout": "dropout(x, p, seed, batch_offset=0, time_offset=0) -> y",
    # -- streaming decoding --
    # rotary position embedding, GPT-NeoX half split: x (B,T,H,P), P even, token t at position
    # offset + t, θ_i = base^(−2i/P), angles in float64; with (x₁, x₂) = (x[..., :P/2], x[..., P/2:]):
    # y₁ = x₁ cos(pθ) − x₂ sin(pθ), y₂ = x₂ cos(pθ) + x₁ sin(pθ). It depends on the absolute
    # position, so a backend holding a slice of the sequence adds its slice's start to offset.
    "rope_forward": "rope_forward(x, offset=0, base=10000.0) -> y",
    # the inverse rotation: dx₁ = dy₁ cos + dy₂ sin, dx₂ = dy₂ cos − dy₁ sin
    "rope_backward": "rope_backward(dy, offset=0, base=10000.0) -> dx",
    # one new query per stream against a KV cache: q (B,H,P), k_cache, v_cache (B,Hk,L,P) holding the
    # key of position j in row j % L (a ring of the last L positions; rows 0..length−1 when length <= L);
    # the query is at position length−1; window W: keys length−1−W .. length−1, all of which must still
    # be in the cache (at most L keys read) -> o (B,H,P), the attention_forward output row of that query;
    # with sinks S and a window, keys 0..S−1 too, kept in rows 0..S−1, the ring in the other L−S rows
    "attention_decode": "attention_decode(q, k_cache, v_cache, length, window=None, sinks=0) -> o",
}

import ast
import functools
import inspect
import types
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

OP_NAMES = tuple(POSITION_WISE_OPS) + tuple(SEQUENCE_MIXING_OPS)


# ---- sequence forms: how each sequence-mixing op continues across a split of the sequence --------
#
# A backend that holds one contiguous slice of each sequence per process (the MPI backend) runs a
# sequence-mixing op as its declared form says. Each form is one shared mechanism there
# (backends/mpi/<mechanism>.py), so an op that fits a form needs a declaration, not new code. The
# declaration of a family `name` covers the ops `name` (an op that is its own backward, as dropout)
# or `name_forward` and `name_backward`. An op of SEQUENCE_MIXING_OPS with no form is refused by a
# backend that splits the sequence (rather than run on a slice as if it were the whole).

@dataclass(frozen=True)
class StatePassing:
    """A recurrence that carries a state from position to position (a scan):

        forward(*inputs, h0=None) -> (*outputs, h_last)
        backward(*d_outputs, *inputs, h0=None, dh_last=None) -> (*d_inputs, dh0)

    h0 is the state entering the sequence (zeros when None), h_last the state leaving it; with
    reverse=True the recurrence runs backward in time (enters after the last position, leaves
    before the first). A slice continues another by taking the other's h_last as its h0, and the
    gradient flows back through dh_last -> dh0. Arguments of the contract that are not declared
    inputs (a scale, a chunk size) are passed through unchanged, wherever they stand.

    inputs, outputs: {name: axes} of the array arguments and results, in the op's order, axes one
    letter per axis ("B T C"). T is the sequence axis (inputs without it are per-sequence:
    weights, whose gradients are partial sums over slices); equal letters are equal sizes. state:
    the axes of h0/h_last, every letter also an input's (so the inputs give its shape).

    channels: optionally a letter of independent channels (in the state and in some inputs): the
    op on channels c0:c1 of every input and output that has that axis (and on whole copies of
    the others, whose gradients then add up over the channel groups) is the op's channels c0:c1.
    It lets the state pass through processes in groups of `group` channels, a pipeline (wider
    groups when a process has more threads than the inputs have rows on the axis B).

    decay: optionally decay(**inputs) (the declared input arrays) -> an array of the state's shape
    with h_last = decay ⊙ h0 + (h_last from a zero h0): the slice's map of its incoming state. It
    lets every process scan at once and get its incoming state from an exclusive scan over
    processes (the MPI backend's scan="exscan").

    example(rng, dtype, T) -> {argument: value} of the forward but h0, a small case with T
    positions, which the tests run the form with (tests/test_sequence_forms.py, tests/mpi_check.py)."""
    inputs: dict
    outputs: dict
    state: str
    reverse: bool = False
    channels: Optional[str] = None
    group: int = 16
    decay: Optional[Callable] = None
    example: Optional[Callable] = None

    def __post_init__(self):
        letters = {a for axes in self.inputs.values() for a in axes.split()}
        if "T" not in letters or "T" in self.state.split():
            raise ValueError(f"StatePassing: the inputs need a sequence axis T and the state none: {self}")
        if not set(self.state.split()) <= letters:
            raise ValueError(f"StatePassing: state axes {self.state!r} must be axes of the inputs: {self}")
        for name, axes in self.outputs.items():
            if "T" not in axes.split() or not set(axes.split()) <= letters:
                raise ValueError(f"StatePassing: output {name} needs the axis T and only axes of the inputs: {self}")
            if self.channels is not None and self.channels not in axes.split():
                raise ValueError(f"StatePassing: output {name} needs the channel axis {self.channels}: {self}")
        if self.channels is not None and self.channels not in self.state.split():
            raise ValueError(f"StatePassing: the channel axis {self.channels!r} must be a state axis: {self}")

    def sizes(self, arguments):
        """{axis letter: size} read from the input arrays' shapes ({argument: value})."""
        return {a: n for name, axes in self.inputs.items() for a, n in zip(axes.split(), arguments[name].shape)}

    def state_shape(self, arguments):
        sizes = self.sizes(arguments)
        return tuple(sizes[a] for a in self.state.split())


@dataclass(frozen=True)
class Halo:
    """An op that reads a fixed number of positions before each one (a causal convolution, a token
    shift):

        forward(x, ..., prefix=None) -> y
        backward(dy, x, ..., prefix=None) -> (dx, ..., dprefix)

    x (B,T,...) is the only per-position argument, its sequence axis 1; prefix (B,width,...) holds
    the `width` positions before x (zeros when None) and dprefix is its gradient (None when prefix
    is None). The other arguments are per-sequence (weights: their gradients, between dx and
    dprefix, are partial sums over slices). A slice continues another by taking the other's last
    `width` positions as its prefix.

    width(**arguments) -> the number of positions read before each; called with the forward's
    arguments and with the backward's (but dy and prefix), so it reads only arguments they share.
    backward_args(**arguments) -> the backward's arguments but dy and prefix ({name: value}), from
    the forward's, when they differ (the conv's bias -> has_bias); example(rng, dtype, T) ->
    {argument: value} of the forward but prefix, a small case (tests/test_sequence_forms.py,
    tests/mpi_check.py). reverse=True: each process holds its slice flipped (last position
    first), so the slices follow one another from the last process to the first and a slice's
    prefix is the last `width` rows of the flipped slice of the process after it (what
    Backend.time_reversed declares for a backward-in-time pass)."""
    width: Callable
    backward_args: Optional[Callable] = None
    example: Optional[Callable] = None
    reverse: bool = False


@dataclass(frozen=True)
class KVPassing:
    """Causal (optionally windowed) attention of the contract's attention_forward/backward: the keys
    and values of earlier slices travel to the later slices whose queries see them, and their
    gradients back to their owners; partial results merge by their log-sum-exp."""


@dataclass(frozen=True)
class Offset:
    """An op that depends on the absolute position (or batch row) only through an offset argument:
    a backend holding positions start.. of the sequence adds start to the argument `time`, one
    holding rows start.. of the batch adds start to `batch` (when given). Nothing crosses a
    boundary. The first argument is the per-position array, (B,T,...)."""
    time: str
    batch: Optional[str] = None


@dataclass(frozen=True)
class SequenceMean:
    """The mean over the sequence axis, (B,T,D) -> (B,D): partial sums over each slice, added
    across slices; a backend holding slices leaves each process with a share of the batch rows
    after it (Backend.local_batch), so what follows runs batch-parallel."""


@dataclass(frozen=True)
class Refused:
    """An op that cannot run on a slice of the sequence; `reason` says what to do instead."""
    reason: str


def _scan_decay(x, delta, A, Bm, Cm, D):
    """The selective scan's map of the state entering a slice: exp(A ⊙ Σ_t Δ_t) (B,Din,N)."""
    return np.exp(A * delta.sum(axis=1, dtype=np.float64)[..., None]).astype(delta.dtype)


def _scan_example(rng, dtype, T, B=2, Din=37, N=5):
    """37 channels: three channel groups of 16, the last one partial."""
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)
    return dict(x=r(B, T, Din), delta=(0.1 * np.abs(r(B, T, Din)) + 0.05).astype(dtype), A=-np.exp(0.5 * r(Din, N)),
                Bm=r(B, T, N), Cm=r(B, T, N), D=r(Din))


def _conv_example(rng, dtype, T, B=2, C=5, W=4):
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)
    return dict(x=r(B, T, C), w=r(C, W), bias=r(C))


def _linear_attention_decay(q, k, v, g):
    """Linear attention's map of the state entering a slice: exp(Σ_t g_t) per key dim, broadcast over V."""
    B, _, H, V = v.shape
    decay = np.exp(g.sum(axis=1, dtype=np.float64))[..., None]  # (B,H,Kg,1)
    return np.broadcast_to(decay, (B, H, q.shape[3], V)).astype(g.dtype)


def _linear_attention_example(rng, dtype, T, B=2, Hq=1, H=2, K=5, V=3):
    """GLA-style per-key decays, two heads sharing one q/k group, chunks of 4 (a short last one)."""
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)
    return dict(q=r(B, T, Hq, K), k=r(B, T, Hq, K), v=r(B, T, H, V), g=-rng.uniform(0.05, 1.0, (B, T, H, K)).astype(dtype),
                scale=0.5, chunk=4)


def _linear_recurrence_decay(a, x):
    """The linear recurrence's map of the state entering a slice: Π_t a_t (B,C)."""
    return np.prod(a, axis=1, dtype=np.float64).astype(a.dtype)


def _linear_recurrence_example(rng, dtype, T, B=2, C=37):
    """37 channels: three channel groups of 16, the last one partial; decays in [0.5, 1)."""
    return dict(a=rng.uniform(0.5, 1.0, (B, T, C)).astype(dtype), x=rng.standard_normal((B, T, C)).astype(dtype))


def _wkv7_example(rng, dtype, T, B=2, H=3, K=5, V=4):
    """As RWKV-7 calls it: decays in (0.5, 1), a = −κ̂ and b = κ̂ ⊙ iclr with κ̂ of unit norm per head."""
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)
    kk = r(B, T, H, K)
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    iclr = rng.uniform(0.0, 1.0, (B, T, H, K)).astype(dtype)
    return dict(r=r(B, T, H, K), w=rng.uniform(0.5, 1.0, (B, T, H, K)).astype(dtype), k=r(B, T, H, K),
                v=r(B, T, H, V), a=-kk, b=kk * iclr)


def _token_shift_example(rng, dtype, T, B=2, C=5, M=3):
    return dict(x=rng.standard_normal((B, T, C)).astype(dtype), mu=rng.uniform(0.0, 1.0, (M, C)).astype(dtype))


def _long_conv_example(rng, dtype, T, B=2, C=19):
    """A filter longer than the sequence (as Hyena's, whose length is its l_max): every position sees
    the whole history, and the halo (L−1 positions) is longer than any slice. 19 channels: a 16-channel
    block and a partial one."""
    r = lambda *shape: rng.standard_normal(shape).astype(dtype)
    return dict(u=r(B, T, C), h=r(T + 2, C))


SEQUENCE_FORMS = {
    "selective_scan": StatePassing(
        inputs=dict(x="B T C", delta="B T C", A="C N", Bm="B T N", Cm="B T N", D="C"),
        outputs=dict(y="B T C"), state="B C N", channels="C", decay=_scan_decay, example=_scan_example),
    "causal_conv1d": Halo(width=lambda w, **_: w.shape[1] - 1,
                          backward_args=lambda x, w, bias: dict(x=x, w=w, has_bias=bias is not None),
                          example=_conv_example),
    "attention": KVPassing(),
    "linear_attention": StatePassing(
        inputs=dict(q="B T Q K", k="B T Q K", v="B T H V", g="B T H D"), outputs=dict(o="B T H V"),
        state="B H K V", decay=_linear_attention_decay, example=_linear_attention_example),
    "linear_recurrence": StatePassing(
        inputs=dict(a="B T C", x="B T C"), outputs=dict(h="B T C"), state="B C", channels="C",
        decay=_linear_recurrence_decay, example=_linear_recurrence_example),
    "rglru_gate": Offset(time="time_offset"),
    # no decay: the map of a slice's incoming state is a product of K×K matrices, not element-wise, so
    # the state passes through the pipeline (over heads) and never through the exclusive scan
    "wkv7": StatePassing(
        inputs=dict(r="B T H K", w="B T H K", k="B T H K", v="B T H V", a="B T H K", b="B T H K"),
        outputs=dict(y="B T H V"), state="B H K V", channels="H", example=_wkv7_example),
    "token_shift": Halo(width=lambda **_: 1, example=_token_shift_example),
    # the whole history a filter of length L reads: the L−1 positions before each slice (zeros before the
    # sequence), a halo as long as the filter
    "long_conv": Halo(width=lambda h, **_: h.shape[0] - 1, example=_long_conv_example),
    "rope": Offset(time="offset"),
    "dropout": Offset(time="time_offset", batch="batch_offset"),
    "mean_pool": SequenceMean(),
    "attention_decode": Refused("decoding appends one token at a time to whole sequences; decode on the "
                                "local backend (be.local)"),
}


def form_ops(name):
    """The ops a form declared under `name` covers: `name` itself, or name_forward and name_backward."""
    if name in SEQUENCE_MIXING_OPS:
        return (name,)
    return tuple(op for op in (f"{name}_forward", f"{name}_backward") if op in SEQUENCE_MIXING_OPS)


def sequence_form(op):
    """(family name, form) of a sequence-mixing op, or (None, None) when none is declared."""
    for name, form in SEQUENCE_FORMS.items():
        if op in form_ops(name):
            return name, form
    return None, None


def op_signature(op):
    """(argument names, {argument: default}, result names) of an op, read from its contract line."""
    call, _, result = {**POSITION_WISE_OPS, **SEQUENCE_MIXING_OPS}[op].partition(" -> ")
    args = ast.parse(f"def {call}: pass").body[0].args
    params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    positional = args.posonlyargs + args.args
    defaults = {a.arg: ast.literal_eval(d) for a, d in zip(positional[len(positional) - len(args.defaults):],
                                                            args.defaults)}
    defaults.update({a.arg: ast.literal_eval(d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d})
    results = [part.split()[0].rstrip(":") for part in result.strip().strip("()").split(",")]
    return params, defaults, results


@functools.cache
def _signature(op):
    params, defaults, _ = op_signature(op)
    return inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=defaults.get(p, inspect.Parameter.empty)) for p in params])


def op_arguments(op, args=(), kwargs=None):
    """{argument: value} of a call of `op` with these positional and keyword arguments, every argument
    of its contract in order (defaults filled in): `fn(*op_arguments(op, ...).values())` calls it."""
    try:
        bound = _signature(op).bind(*args, **(kwargs or {}))
    except TypeError as e:
        raise TypeError(f"{op}: {e}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def check_sequence_forms(forms=None):
    """Every declaration covers ops of the contract whose signatures have its form; raises ValueError
    naming the first that does not (tests/test_sequence_forms.py)."""
    for name, form in (SEQUENCE_FORMS if forms is None else forms).items():
        ops = form_ops(name)
        pair = isinstance(form, (StatePassing, Halo, KVPassing, SequenceMean))
        if not ops or (pair and len(ops) != 2):
            raise ValueError(f"SEQUENCE_FORMS[{name!r}]: a {type(form).__name__} needs "
                             f"{'ops ' if pair else 'an op '}{name}_forward and {name}_backward"
                             f"{'' if pair else f' or {name}'} in SEQUENCE_MIXING_OPS; found {list(ops)}")
        problem = _form_mismatch(form, ops)
        if problem:
            raise ValueError(f"SEQUENCE_FORMS[{name!r}]: {problem}")


def _form_mismatch(form, ops):
    sigs = [op_signature(op) for op in ops]
    if isinstance(form, StatePassing):
        (fparams, _, fresults), (bparams, _, bresults) = sigs
        ins, outs = list(form.inputs), list(form.outputs)
        douts = ["d" + o for o in outs]
        if ([p for p in fparams if p in ins] != ins or "h0" not in fparams or fresults != outs + ["h_last"]
                or bparams[:len(outs)] != douts or [p for p in bparams if p in ins] != ins
                or not {"h0", "dh_last"} <= set(bparams) or bresults != ["d" + i for i in ins] + ["dh0"]):
            return (f"a StatePassing op with inputs {ins} and outputs {outs} is f({', '.join(ins)}, ..., h0=None) -> "
                    f"({', '.join(outs)}, h_last) and f_backward({', '.join(douts + ins)}, ..., h0=None, "
                    f"dh_last=None) -> ({', '.join('d' + i for i in ins)}, dh0); the contract says "
                    f"{SEQUENCE_MIXING_OPS[ops[0]]} and {SEQUENCE_MIXING_OPS[ops[1]]}")
    elif isinstance(form, Halo):
        (fparams, _, fresults), (bparams, _, bresults) = sigs
        if (fparams[-1] != "prefix" or bparams[:2] != ["d" + fresults[0], fparams[0]] or bparams[-1] != "prefix"
                or bresults[0] != "d" + fparams[0] or bresults[-1] != "dprefix"):
            return (f"a Halo op is f(x, ..., prefix=None) -> y and f_backward(dy, x, ..., prefix=None) -> "
                    f"(dx, ..., dprefix); the contract says {SEQUENCE_MIXING_OPS[ops[0]]} and "
                    f"{SEQUENCE_MIXING_OPS[ops[1]]}")
    elif isinstance(form, Offset):
        for op, (params, _, _) in zip(ops, sigs):
            for arg in (form.time, form.batch):
                if arg is not None and arg not in params:
                    return f"{op} has no argument {arg!r}: {SEQUENCE_MIXING_OPS[op]}"
    return None


class Backend:
    """A named table of ops. Subclasses set `name` and define every op in OP_NAMES."""

    name = "abstract"

    # ---- distribution hooks -------------------------------------------------------------
    # A backend that spreads one model over several processes (the MPI backend) gives each
    # process a share of the sequence or of the batch. The model and the training loop call
    # these where that shows; for a backend running in one process they change nothing.
    rank, size = 0, 1  # this process among the processes running the model, and their count

    def shard_tokens(self, x):
        """This process's part of a model input x (B,T,...): a slice of its sequence or of its batch."""
        return x

    def local_positions(self, table):
        """The rows of a per-position table (T,...) for the positions this process holds (a view)."""
        return table

    def prepend_positions(self, n):
        """The model's sequence gains n positions before the first of the input that went through
        shard_tokens (Hymba's meta tokens), held by the process that holds that first position; ->
        whether this process holds them (and so prepends them to its part). The split it gives is the
        input's split shifted by n, so calling it again after another shard_tokens of the same length (the
        targets, between a forward and its backward) restores it."""
        return True

    def local_batch(self, a):
        """The rows of a per-sample array (B,...) whose outputs (logits, loss) this process computes."""
        return a

    def all_sum(self, value):
        """The sum of a number or array over the processes (counts, totals)."""
        return value

    def reduce_gradients(self, params):
        """Sum each param.grad over the processes, in place: each process holds a partial sum."""

    # A non-causal mixer scans some directions in another order than the stored one
    # (hybridref/layers/scan_directions.py): a permutation of the positions (the patch grid read
    # column-major), and time reversal, a flip of each process's slice run on the backend's time
    # reversal. A backend holding whole sequences does both locally; one holding slices moves
    # positions between its processes and passes what crosses a slice boundary the other way.
    def sequence_length(self, length):
        """The whole sequence's length, given the `length` positions this process holds of it."""
        return length

    def permute_positions(self, x, order):
        """y (B,T,...) with y[:, t] = x[:, order[t]], order (T,) a permutation of the whole sequence's
        positions: a backend holding slices returns this process's slice of y, gathered from every
        process's slice of x. The backward (the adjoint) is permute_positions(dy, argsort(order))."""
        return np.ascontiguousarray(x[:, order])

    def time_reversed(self):
        """This backend for sequences each process has flipped along the time axis (its slice
        read last position first): sequence-mixing ops pass their state and halo from later to
        earlier processes. A backend holding whole sequences is its own time reversal."""
        return self

    def missing_ops(self):
        return [op for op in OP_NAMES if not callable(getattr(self, op, None))]

    def describe(self):
        """One line for `hybridref info`."""
        return self.name

    def __repr__(self):
        return f"<hybridref backend {self.describe()}>"


def package_modules(package):
    """Every module of a package (a backend's one module per concern), imported: a new kernel module
    is found without being listed anywhere."""
    import importlib
    import pkgutil
    return [importlib.import_module(f"{package.__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name)]


def collect_ops(backend, modules, bind=False):
    """Set every op in OP_NAMES found in `modules` (one module per concern) on `backend`.

    With bind=True each op is bound as a method, its first argument the backend
    (the C wrappers use it to reach the compiled library)."""
    for module in modules:
        for op in OP_NAMES:
            fn = getattr(module, op, None)
            if fn is not None:
                setattr(backend, op, types.MethodType(fn, backend) if bind else fn)
    return backend

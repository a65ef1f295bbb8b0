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
runs POSITION_WISE_OPS locally and overrides only SEQUENCE_MIXING_OPS.
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
    # (W+1 keys, recurrentgemma convention). Returns o (B,Tq,H,P) and lse (B,H,Tq), the
    # log-sum-exp of each score row (o = 0, lse = -inf for a query that sees no key),
    # which is all the backward keeps: it recomputes probabilities in tiles. The backward
    # takes o and lse of the whole key set, so a query block's gradients against
    # several key blocks add up (the MPI backend's ring).
    "attention_forward": "attention_forward(q, k, v, window=None, q_offset=0) -> (o, lse)",
    "attention_backward": "attention_backward(do, q, k, v, o, lse, window=None, q_offset=0) -> (dq, dk, dv)",
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
    # y = x ⊙ keep / (1 − p), x (B,T,...): inverted dropout whose mask is a hash of (seed, batch row
    # batch_offset + b, position time_offset + t, feature), the same on every backend
    # (backends/numpy/dropout.py). Position-wise in what it computes, but its mask depends on the
    # absolute row and position, so a backend holding a slice of the batch or the sequence adds
    # its slice's start to the offsets. Linear with a fixed mask: dx = dropout(dy, p, seed, ...).
    "dropout": "dropout(x, p, seed, batch_offset=0, time_offset=0) -> y",
    # -- streaming decoding (issue #4) --
    # rotary position embedding, GPT-NeoX half split: x (B,T,H,P), P even, token t at position
    # offset + t, θ_i = base^(−2i/P), angles in float64; with (x₁, x₂) = (x[..., :P/2], x[..., P/2:]):
    # y₁ = x₁ cos(pθ) − x₂ sin(pθ), y₂ = x₂ cos(pθ) + x₁ sin(pθ). It depends on the absolute
    # position, so a backend holding a slice of the sequence adds its slice's start to offset.
    "rope_forward": "rope_forward(x, offset=0, base=10000.0) -> y",
    # the inverse rotation: dx₁ = dy₁ cos + dy₂ sin, dx₂ = dy₂ cos − dy₁ sin
    "rope_backward": "rope_backward(dy, offset=0, base=10000.0) -> dx",
    # one new query per stream against a KV cache: q (B,H,P), k_cache, v_cache (B,Hk,L,P) whose first
    # `length` rows are filled (the query is at position length−1); window W: keys length−1−W .. length−1
    # -> o (B,H,P), the attention_forward output row of that query
    "attention_decode": "attention_decode(q, k_cache, v_cache, length, window=None) -> o",
}

import types

OP_NAMES = tuple(POSITION_WISE_OPS) + tuple(SEQUENCE_MIXING_OPS)


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

    def local_batch(self, a):
        """The rows of a per-sample array (B,...) whose outputs (logits, loss) this process computes."""
        return a

    def all_sum(self, value):
        """The sum of a number or array over the processes (counts, totals)."""
        return value

    def reduce_gradients(self, params):
        """Sum each param.grad over the processes, in place: each process holds a partial sum."""

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

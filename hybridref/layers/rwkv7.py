"""RWKV-7 "Goose" time mixing (Peng et al. 2025), as RWKV-LM's RWKV-v7 (rwkv_v7_demo.py, train_temp's
RWKV_Tmix_x070) computes it:

    x_r .. x_g = u + (u_{t-1} − u) ⊙ mix_{r..g}       token shift: six learned mixes (the token_shift op)
    r, k, v    = receptance(x_r), key(x_k), value(x_v)
    w          = exp(−e^{−0.5} σ(w0 + tanh(x_w W1) W2))   decay per channel, in (0.545, 1)
    v          = v + (v_first − v) ⊙ σ(v0 + x_v V1 V2)    value residual (every rwkv7 layer but the first)
    a          = σ(a0 + x_a A1 A2)                    in-context learning rate
    g          = σ(x_g G1) G2                         output gate
    κ̂          = L2norm_head(k ⊙ k_k)                 (eps 1e-12, F.normalize's)
    k          = k ⊙ (1 + (a − 1) ⊙ k_a)
    y          = WKV7(r, w, k, v, −κ̂, κ̂ ⊙ a)          per head of P = head_size: the wkv7 op
    out        = output((GroupNorm_H(y) + Σ_p(r ⊙ k ⊙ r_k) v) ⊙ g)   GroupNorm eps 64e-5, one group per head

The low-rank maps are Linear pairs: W1 = w1, W2 = w2 with w0 its bias (likewise a1, a2 + a0 and
v1, v2 + v0; g1, g2 have no bias). sigmoid, tanh and the L2 norm are element-wise NumPy on (B,T,C)
arrays next to the ops; every product, the token shift, the recurrence and the norms run on the backend.

Value residual: the first rwkv7 layer of a pass (the one that finds no "v_first" in the pass's side
inputs) puts its v there; every later one reads it. A layer cannot know its place when it is built
(mixers are built from their options alone), so every layer holds the v gate and the first leaves it
unused (zero gradient), as RWKV-LM's layer 0 does. Gradients flow back through side.add_grad by the
readers and side.pop_grad by the first layer. Without side inputs (a mixer on its own) the layer is a
first layer.

Init (RWKV-LM train_temp/src/model.py): the token-shift mixes, w0, a0, v0, k_k depend on the layer's
depth, ratio_0_to_1 = i/(n−1) and ratio_1_to_almost0 = 1 − i/n for the i-th of n rwkv7 layers
(set_depth; build_blocks calls it); the second low-rank factors are orthogonal ×0.1 (QR of a Gaussian,
as torch.nn.init.orthogonal_), the first factors and the output projection zero; receptance, value
U(±0.5/√C), key U(±0.05/√C). zero_init=False draws the zero-initialised weights instead (U(±1/√fan_in),
output N(0, out_std²)): the tests need it, since a zero factor makes its partner's gradient zero. As in
RWKV-LM, none of these parameters but the four C×C projections takes weight decay.

Decoding: the state is the previous token's input, shift (B,1,C), and the WKV state wkv (B,H,P,P);
a step costs the same at every position.
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Param
from .registry import register_mixer

DECAY_SCALE = math.exp(-0.5)  # w = exp(−e^{−0.5} σ(·)): decays in (e^{−e^{−0.5}}, 1) = (0.545, 1)
KK_EPS = 1e-12  # F.normalize's eps for κ̂
MIX_POWERS = (0.2, 0.9, 0.7, 0.7, 0.9, 0.2)  # x_r .. x_g = 1 − (i/C)^(power · ratio_1_to_almost0)


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for any x


def suggested_rank(C, factor):
    """RWKV-LM's suggestion for a low-rank dimension: max(32, round(factor·√C / 32)·32)."""
    return max(32, int(round(factor * math.sqrt(C) / 32)) * 32)


def orthogonal(rng, rows, cols, gain):
    """A (rows, cols) matrix with orthonormal columns (rows >= cols) or rows, times gain: the Q of a
    Gaussian's QR with the signs of R's diagonal, as torch.nn.init.orthogonal_."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return gain * (q if rows >= cols else q.T)


def depth_ratios(index, count):
    """(ratio_0_to_1, ratio_1_to_almost0) of the index-th of count layers, RWKV-LM's init schedule."""
    return (index / (count - 1) if count > 1 else 0.0), 1.0 - index / count


@register_mixer("W", "rwkv7")
class RWKV7(Mixer):
    # RWKV's blocks hold no MLP: its channel mixing is the mixer "C" (rwkv7_cmix), so a RWKV-7 model is
    # the pattern "WCWC…", x += att(ln1 x); x += ffn(ln2 x) with each letter's block a pre-norm residual.
    mlp_ratio = 0.0
    # D = 12 (the suite), 20, 24: 3, 5, 6 heads of 4; ranks below the head count; random zero-init weights
    test_options = dict(head_size=4, decay_low_rank=3, a_low_rank=2, v_low_rank=2, gate_low_rank=5, zero_init=False)
    GN_EPS = 64e-5  # RWKV-LM's ln_x: GroupNorm(H, C, eps=64e-5)

    def __init__(self, d, rng, head_size=64, decay_low_rank=None, a_low_rank=None, v_low_rank=None,
                 gate_low_rank=None, zero_init=True, out_std=None):
        """Low-rank dims None: RWKV-LM's suggestion for this width (max(32, round(f·√C/32)·32) with f = 2.5
        for the decay and a, 1.7 for the value residual, 5 for the gate)."""
        super().__init__(d)
        if head_size < 1 or d % head_size:
            raise ValueError(f"rwkv7: d_model {d} must be a positive multiple of head_size {head_size}")
        self.head_size, self.n_heads = head_size, d // head_size
        ranks = {}
        for name, given, factor in (("decay_low_rank", decay_low_rank, 2.5), ("a_low_rank", a_low_rank, 2.5),
                                    ("v_low_rank", v_low_rank, 1.7), ("gate_low_rank", gate_low_rank, 5.0)):
            ranks[name] = suggested_rank(d, factor) if given is None else given
            if isinstance(ranks[name], bool) or not isinstance(ranks[name], int) or ranks[name] < 1:
                raise ValueError(f"rwkv7: {name} must be an int >= 1 or None, got {given!r}")
        C, bound = d, d ** -0.5
        self.mix = Param(np.zeros((6, C)), decay=False)  # token-shift mixes x_r, x_w, x_k, x_v, x_a, x_g
        self.receptance = Linear(C, C, bias=False, rng=rng)
        self.key = Linear(C, C, bias=False, rng=rng)
        self.value = Linear(C, C, bias=False, rng=rng)
        self.output = Linear(C, C, bias=False, rng=rng, std=out_std)
        self.receptance.weight.data[...] = rng.uniform(-0.5 * bound, 0.5 * bound, (C, C))
        self.key.weight.data[...] = rng.uniform(-0.05 * bound, 0.05 * bound, (C, C))
        self.value.weight.data[...] = rng.uniform(-0.5 * bound, 0.5 * bound, (C, C))

        def low_rank(rank, bias):
            first, second = Linear(C, rank, bias=False, rng=rng), Linear(rank, C, bias=bias, rng=rng)
            second.weight.data[...] = orthogonal(rng, C, rank, 0.1)
            if zero_init:
                first.weight.data[...] = 0.0
            for p in (first.weight, second.weight):
                p.decay = False
            return first, second

        self.w1, self.w2 = low_rank(ranks["decay_low_rank"], True)
        self.a1, self.a2 = low_rank(ranks["a_low_rank"], True)
        self.v1, self.v2 = low_rank(ranks["v_low_rank"], True)
        self.g1, self.g2 = low_rank(ranks["gate_low_rank"], False)
        if zero_init:
            self.output.weight.data[...] = 0.0
        self.k_k = Param(np.zeros(C), decay=False)
        self.k_a = Param(np.full(C, 1.02), decay=False)
        self.r_k = Param(np.full((self.n_heads, head_size), -0.04), decay=False)
        self.ln_w = Param(np.ones(C), decay=False)
        self.ln_b = Param(np.zeros(C), decay=False)
        self.set_depth(0, 1)

    def set_depth(self, index, count):
        """RWKV-LM's depth-dependent init of the index-th of count rwkv7 layers: the token-shift mixes,
        w0 (decay speeds), a0, v0 and k_k. Deterministic: no random draw."""
        C, N = self.d_model, self.head_size
        r01, r10 = depth_ratios(index, count)
        n = np.arange(C)
        ddd = n / C
        self.mix.data[...] = np.stack([1.0 - ddd ** (p * r10) for p in MIX_POWERS])
        linear = n / max(C - 1, 1) - 0.5
        zigzag = ((n % N) - (N - 1) / 2) / max((N - 1) / 2, 1)
        zigzag = zigzag * np.abs(zigzag)
        www = -6 + 6 * (n / max(C - 1, 1)) ** (1 + r01 ** 0.3)
        self.w2.bias.data[...] = www + 0.5 + zigzag * 2.5
        self.a2.bias.data[...] = -0.19 + zigzag * 0.3 + linear * 0.4
        self.v2.bias.data[...] = 0.73 - linear * 0.4
        self.k_k.data[...] = 0.71 - linear * 0.1

    # -- pieces shared by forward and step --------------------------------------------------------------
    @staticmethod
    def _lin(m, x, keep):
        """m(x) for x (..., d_in): the layer's forward (kept for backward) or its step."""
        return m.forward(x) if keep else m.step(x.reshape(-1, m.d_in)).reshape(*x.shape[:-1], m.d_out)

    def _heads(self, x):
        return x.reshape(*x.shape[:-1], self.n_heads, self.head_size)

    def _group_norm(self, y):
        """GroupNorm over each head's P values with per-channel affine: y (M,H,P) -> (M,H,P), and per head
        the normalised input's mean and rstd (one layernorm op per head, its slice of the weights)."""
        out, stats, P = np.empty_like(y), [], self.head_size
        for h in range(self.n_heads):
            s = slice(h * P, (h + 1) * P)
            out[:, h], mean, rstd = self.be.layernorm_forward(np.ascontiguousarray(y[:, h]), self.ln_w.data[s],
                                                              self.ln_b.data[s], self.GN_EPS)
            stats.append((mean, rstd))
        return out, stats

    def _mix(self, u, state, side, keep):
        """Everything up to the output projection: u (B,T,C) -> z (B,T,C), the wkv state leaving,
        and what the backward needs."""
        B, T, C = u.shape
        # copies: the state is advanced in place after the forward, the backward needs what it started from
        prefix = None if state is None else state["shift"].copy()
        xs = self.be.token_shift_forward(u, self.mix.data, prefix)  # (B,T,6,C)
        xr, xw, xk, xv, xa, xg = (np.ascontiguousarray(xs[:, :, i]) for i in range(6))
        lin = lambda m, x: self._lin(m, x, keep)
        r, k0, v0 = lin(self.receptance, xr), lin(self.key, xk), lin(self.value, xv)
        tw = np.tanh(lin(self.w1, xw))
        sw = sigmoid(lin(self.w2, tw))
        w = np.exp(-DECAY_SCALE * sw)
        first = side is None or "v_first" not in side
        if first:
            v, vf, gv = v0, None, None
            if side is not None:
                side.put("v_first", v0)
        else:
            vf = side.get("v_first")
            gv = sigmoid(lin(self.v2, lin(self.v1, xv)))
            v = v0 + (vf - v0) * gv
        a = sigmoid(lin(self.a2, lin(self.a1, xa)))
        sg = sigmoid(lin(self.g1, xg))
        g = lin(self.g2, sg)
        kk = self._heads(k0 * self.k_k.data)
        norm = np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), KK_EPS)
        kh = kk / norm  # κ̂ (B,T,H,P)
        k = k0 * (1.0 + (a - 1.0) * self.k_a.data)
        h0 = None if state is None else state["wkv"].copy()
        # the very arrays given to the op go to its backward (a backend holding a slice of the sequence
        # finds what its forward received by their identity)
        wkv_in = (self._heads(r), self._heads(w), self._heads(k), self._heads(v), -kh, kh * self._heads(a))
        y, h_last = self.be.wkv7_forward(*wkv_in, h0)
        yn, stats = self._group_norm(y.reshape(B * T, self.n_heads, self.head_size))
        bonus = (self._heads(r) * self._heads(k) * self.r_k.data).sum(-1, keepdims=True)  # (B,T,H,1)
        o = yn.reshape(B, T, C) + (bonus * self._heads(v)).reshape(B, T, C)
        kept = (u, prefix, h0, r, k0, v0, tw, sw, w, v, vf, gv, a, sg, g, norm, kh, k, wkv_in, y, stats, bonus, o,
                side)
        return o * g, h_last, kept

    # -- the mixer ---------------------------------------------------------------------------------------
    def forward(self, u, state=None, side=None):
        """u (B,T,C) -> (B,T,C). With a decode `state` the token shift starts from its `shift` token and the
        recurrence from its `wkv` state, both left at the end of u (a prefill, in one piece or in chunks);
        the backward then gives the gradient of u alone."""
        self.check_input(u)
        u = np.ascontiguousarray(u)
        z, h_last, kept = self._mix(u, state, side, keep=True)
        if state is not None:
            state["shift"][...] = u[:, -1:]
            state["wkv"][...] = h_last
        self.save(kept)
        return self.output.forward(z)

    def backward(self, dout):
        """dout (B,T,C) -> du (B,T,C); parameter gradients added, v_first's gradient to the side inputs."""
        (u, prefix, h0, r, k0, v0, tw, sw, w, v, vf, gv, a, sg, g, norm, kh, k, wkv_in, y, stats, bonus, o,
         side) = self.saved()[0]
        B, T, C = u.shape
        H, P = self.n_heads, self.head_size
        dz = self.output.backward(dout)
        do, dg = dz * g, dz * o
        # bonus: o += s v per head, s = Σ_p r k r_k
        doh, vh, rh, kh_ = self._heads(do), self._heads(v), self._heads(r), self._heads(k)
        ds = (doh * vh).sum(-1, keepdims=True)
        dv = (bonus * doh).reshape(B, T, C)
        dr = (ds * kh_ * self.r_k.data).reshape(B, T, C)
        dk = (ds * rh * self.r_k.data).reshape(B, T, C)
        self.r_k.grad += (ds * rh * kh_).sum(axis=(0, 1))
        # GroupNorm per head
        dyn, y2 = doh.reshape(B * T, H, P), y.reshape(B * T, H, P)
        dy = np.empty_like(y2)
        for h, (mean, rstd) in enumerate(stats):
            s = slice(h * P, (h + 1) * P)
            dy[:, h], dw_, db_ = self.be.layernorm_backward(np.ascontiguousarray(dyn[:, h]), np.ascontiguousarray(y2[:, h]),
                                                            self.ln_w.data[s], mean, rstd)
            self.ln_w.grad[s] += dw_
            self.ln_b.grad[s] += db_
        ah = self._heads(a)
        gr, gw, gk, gv_, ga_, gb_, _ = self.be.wkv7_backward(dy.reshape(B, T, H, P), *wkv_in, h0, None)
        dr += gr.reshape(B, T, C)
        dk += gk.reshape(B, T, C)
        dv += gv_.reshape(B, T, C)
        dkh = gb_ * ah - ga_  # a = −κ̂, b = κ̂ ⊙ a
        da = (gb_ * kh).reshape(B, T, C)
        # k = k0 ⊙ (1 + (a − 1) ⊙ k_a)
        da += dk * k0 * self.k_a.data
        self.k_a.grad += (dk * k0 * (a - 1.0)).sum(axis=(0, 1))
        dk0 = dk * (1.0 + (a - 1.0) * self.k_a.data)
        # κ̂ = kk / ‖kk‖ (the norm clamped at eps: then a constant)
        dkk = (dkh - kh * (kh * dkh).sum(-1, keepdims=True) * (norm > KK_EPS)) / norm
        dkk = dkk.reshape(B, T, C)
        dk0 += dkk * self.k_k.data
        self.k_k.grad += (dkk * k0).sum(axis=(0, 1))
        # gates: g = σ(x_g G1) G2, a = σ(·), w = exp(−c σ(·)), tanh in the decay's low-rank map
        dxg = self.g1.backward(self.g2.backward(dg) * sg * (1.0 - sg))
        dxa = self.a1.backward(self.a2.backward(da * a * (1.0 - a)))
        dsw = gw.reshape(B, T, C) * w * (-DECAY_SCALE)
        dxw = self.w1.backward(self.w2.backward(dsw * sw * (1.0 - sw)) * (1.0 - tw * tw))
        # value residual
        if vf is None:
            extra = None if side is None else side.pop_grad("v_first")
            dv0 = dv if extra is None else dv + extra
            dxv = self.value.backward(dv0)
        else:
            side.add_grad("v_first", dv * gv)
            dgv = dv * (vf - v0)
            dxv = self.value.backward(dv * (1.0 - gv)) + self.v1.backward(self.v2.backward(dgv * gv * (1.0 - gv)))
        dxk = self.key.backward(dk0)
        dxr = self.receptance.backward(dr)
        dxs = np.stack([dxr, dxw, dxk, dxv, dxa, dxg], axis=2)
        du, dmix, _ = self.be.token_shift_backward(dxs, u, self.mix.data, prefix)
        self.mix.grad += dmix
        return du

    # -- decoding ----------------------------------------------------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros: shift (B,1,C), the previous token's input, and wkv (B,H,P,P); max_len is not needed."""
        return {"shift": np.zeros((batch, 1, self.d_model), dtype),
                "wkv": np.zeros((batch, self.n_heads, self.head_size, self.head_size), dtype)}

    def step(self, u, state, side=None):
        """One token per stream: u (B,C) -> (B,C); updates state in place."""
        self.check_input(u, 2)
        u = np.ascontiguousarray(u)
        z, h_last, _ = self._mix(u[:, None], state, side, keep=False)
        state["shift"][...] = u[:, None]
        state["wkv"][...] = h_last
        return self.output.step(z[:, 0])

"""Mamba (S6) mixer, as in Gu & Dao 2023 and state-spaces/mamba's mamba_simple.py.

    x, z   = split(in_proj(u))                         u (B,T,D) -> x, z (B,T,Din), Din = expand·D
    x      = SiLU(conv1d(x))                           depthwise causal, width d_conv, with bias
    dt,B,C = split(x_proj(x))                          (B,T,R), (B,T,N), (B,T,N), R = ceil(D/16)
    dt,B,C = RMSNorm(dt), RMSNorm(B), RMSNorm(C)        only with bcdt_rms (Jamba; eps = its value)
    Δ      = softplus(dt_proj(dt))                     dt_proj has the bias dt_bias
    A      = −exp(A_log)                               (Din,N), S4D-real init A_log = log(1..N)
    y      = selective_scan(x, Δ, A, B, C, D)          h_t = exp(Δ_t A) h_{t−1} + Δ_t B_t x_t, y_t = C_t·h_t + D x_t
    out    = out_proj(y ⊙ SiLU(z))

bcdt_rms (Jamba, Lieber et al. 2024; transformers' JambaMambaMixer dt_layernorm, b_layernorm,
c_layernorm): RMSNorms with learned weights on dt, B and C after x_proj, which Jamba's reference code
adds to keep the scan's inputs at a stable scale in large models; the option's value is their eps
(None: no norms, Mamba's own mixer).

Multi-head (`mamba_heads` H > 1; Zamba, transformers' ZambaMambaMixer with n_mamba_heads): the Din
channels after the conv are H heads of Dh = Din/H, and each head runs the lines from x_proj to the scan
as a Mamba of its own on its channels, with its own x_proj (Dh -> R+2N), dt_proj (R -> Dh), A_log,
D, and so its own dt, B and C:

    dt_h,B_h,C_h = split(x_h x_projₕᵀ)          x_h (B,T,Dh) the channels h·Dh … (h+1)·Dh − 1 of x
    y_h          = selective_scan(x_h, softplus(dt_projₕ(dt_h)), A_h, B_h, C_h, D_h)
    y            = concat_h(y_h)                 then the gate and out_proj as above
x_proj and dt_proj are block-diagonal (BlockDiagonalLinear, H blocks), A_log (Din,N) and D (Din,) hold
the heads' rows in order, and the decode state keeps its layout (ssm (B,Din,N): head h's states are
its channels' rows). The scan runs once per head: folding the heads into the batch axis would share
A and D across them, folding them into the channels would share B and C, and the scan op takes
neither per head. H = 1 is Mamba itself. Not with directions > 1 or bcdt_rms (no model has them).

Decoding: the state is the conv input of the last d_conv−1 tokens, conv (B, d_conv−1, Din), and the
scan state ssm (B, Din, N): a step costs the same at every position. `forward(u, state)` (prefill)
advances it over the T tokens of u, `step(u_t, state)` by one token per stream.

Non-causal scans for images (`directions`, scan_directions.py): the lines from conv1d to the scan
run K = directions times, each on the tokens in its own order and with its own conv, x_proj,
dt_proj, A_log and D; in_proj and out_proj are shared, and the outputs, put back in the stored
order, are averaged before the gate:

    y = (1/K) Σ_k from_scan_k(ssm_k(to_scan_k(x)))      out = out_proj(y ⊙ SiLU(z))

- directions=2 is Vision Mamba's bidirectional block (hustvl/Vim, mamba_simple.py, bimamba_type "v2"):
  a forward scan and a backward-in-time one. Vim gates each direction with SiLU(z) and adds them,
  which is this sum gated once; the 1/2 is its if_devide_out=True, the setting of every model its
  models_mamba.py registers. Vim leaves its backward dt_proj at torch's default Linear init; here
  every direction is initialised as the forward one (S4D-real A, Mamba's dt init), as VMamba does.
- directions=4 is VMamba's cross scan (MzeroMiko/VMamba, SS2D with CrossScan/CrossMerge): the T
  tokens as an H×W patch grid (`grid`, or a square inferred from T), scanned row-major,
  column-major and both reversed. Simplified from SS2D: (1) each direction keeps Mamba's own 1-D
  causal conv (width d_conv, along its scan order) where SS2D runs one shared 3×3 depthwise 2-D
  conv before the cross scan, so the mixer stays a composition of the existing conv and scan ops
  and a direction is exactly a Mamba scan; (2) SS2D sums the four outputs and applies a LayerNorm
  (out_norm) before the gate, here they are averaged (the 1/4 keeps the output at the scale of one
  scan, the job that the scale-free LayerNorm does there) and there is no out_norm; (3) SS2D's
  x_proj/dt_proj per direction are the same as here; its in_proj and out_proj likewise shared.

A mixer with directions > 1 reads later tokens, so it is not causal (`causal` is False): it does
not decode (init_state, step and a prefill from a state are refused) and a character LM built
from it would see the future. Under the MPI backend's sequence mode a backward-in-time scan runs
on each process's slice flipped, on `be.time_reversed()` (conv halo and scan state passed from
later to earlier processes), and the cross scan's transposition is an all-to-all
(`be.permute_positions`): both exact.
"""
import math

import numpy as np

from .linear import Linear
from .mixer import Mixer
from .module import Module, Param
from .norm import RMSNorm
from .registry import register_mixer
from .rglru import BlockDiagonalLinear
from .scan_directions import check_grid, from_scan, patch_grid, scan_directions, to_scan


class ScanParams(Module):
    """The parameters of one scan direction beyond the first (whose are the Mamba's own)."""


def init_scan_params(p, rng, d, din, d_state, d_conv, dt_rank, dt_min, dt_max, dt_floor, heads=1):
    """Set one scan's parameters on p: conv_weight (Din, d_conv), conv_bias (Din,), x_proj, dt_proj
    (block-diagonal over `heads` heads when heads > 1), A_log (Din, N), D (Din,), initialised as
    state-spaces/mamba does."""
    bound = 1.0 / math.sqrt(d_conv)  # torch's Conv1d init for a depthwise kernel (fan_in = d_conv)
    p.conv_weight = Param(rng.uniform(-bound, bound, (din, d_conv)))
    p.conv_bias = Param(rng.uniform(-bound, bound, din), decay=False)
    if heads == 1:
        p.x_proj = Linear(din, dt_rank + 2 * d_state, bias=False, rng=rng)
        p.dt_proj = Linear(dt_rank, din, bias=True, rng=rng)
    else:
        p.x_proj = BlockDiagonalLinear(din, heads, rng, out_width=heads * (dt_rank + 2 * d_state), bias=False)
        p.dt_proj = BlockDiagonalLinear(heads * dt_rank, heads, rng, out_width=din)
    # dt_proj: weight U(±R^-1/2); bias = softplus⁻¹(dt), dt log-uniform in [dt_min, dt_max]
    p.dt_proj.weight.data[...] = rng.uniform(-dt_rank ** -0.5, dt_rank ** -0.5, p.dt_proj.weight.shape)
    dt = np.exp(rng.uniform(math.log(dt_min), math.log(dt_max), din)).clip(min=dt_floor)
    p.dt_proj.bias.data[...] = (dt + np.log(-np.expm1(-dt))).reshape(p.dt_proj.bias.shape)
    p.A_log = Param(np.log(np.tile(np.arange(1, d_state + 1, dtype=np.float64), (din, 1))), decay=False)
    p.D = Param(np.ones(din), decay=False)


@register_mixer("M", "mamba")
class Mamba(Mixer):
    mlp_ratio = 2.5  # the mixer holds ~6·D² weights: with a 2.5·D MLP a block is as large as attention's
    test_options = dict(d_state=4)
    # also checked by the conformance suite and under mpiexec. bcdt_rms with dt_rank 4: at the test widths
    # dt_rank would be 1, where RMSNorm(dt) is ±w and its weight's gradient a sum of ±ddt over every
    # position with heavy cancellation: float32 against float64 on one process 2.7e-6 relative (4.8e-7 at
    # dt_rank 4), and 2.5e-5 under mpiexec -n 3, past mpi_check's 1e-5
    test_variants = (dict(directions=2), dict(directions=4), dict(bcdt_rms=1e-5, dt_rank=4), dict(mamba_heads=2))

    def __init__(self, d, rng, d_state=16, d_conv=4, expand=2, dt_rank=None,
                 dt_min=1e-3, dt_max=0.1, dt_floor=1e-4, directions=1, grid=None, bcdt_rms=None, mamba_heads=1,
                 out_std=None):
        """mamba_heads: the number of heads of the lines from x_proj to the scan (Zamba's n_mamba_heads; 1: Mamba)."""
        super().__init__(d)
        self.directions = scan_directions(directions)
        self.grid = check_grid(grid, directions)
        self.d_inner = din = expand * d
        self.d_state = d_state
        self.dt_rank = dt_rank or math.ceil(d / 16)
        self.heads = mamba_heads
        if not isinstance(mamba_heads, int) or mamba_heads < 1 or din % mamba_heads:
            raise ValueError(f"mamba: mamba_heads must be a whole number >= 1 dividing d_inner = {din}, "
                             f"got {mamba_heads!r}")
        if mamba_heads > 1 and (directions != 1 or bcdt_rms is not None):
            raise ValueError("mamba: mamba_heads > 1 (Zamba's multi-head Mamba) is implemented with directions=1 "
                             "and without bcdt_rms only")
        scan_init = (d, din, d_state, d_conv, self.dt_rank, dt_min, dt_max, dt_floor, mamba_heads)
        self.in_proj = Linear(d, 2 * din, bias=False, rng=rng)
        init_scan_params(self, rng, *scan_init)
        self.out_proj = Linear(din, d, bias=False, rng=rng, std=out_std)
        for direction in self.directions[1:]:
            setattr(self, f"scan_{direction.name}", ScanParams())
            init_scan_params(self.scan_params(direction), rng, *scan_init)
        self.bcdt_rms = bcdt_rms
        if bcdt_rms is not None:
            if not 0 < bcdt_rms < 1:
                raise ValueError(f"mamba: bcdt_rms is the eps of the RMSNorms on dt, B, C: a number between 0 and "
                                 f"1 (Jamba: 1e-6), or None for none; got {bcdt_rms!r}")
            for direction in self.directions:
                p = self.scan_params(direction)
                p.dt_layernorm, p.b_layernorm = RMSNorm(self.dt_rank, bcdt_rms), RMSNorm(d_state, bcdt_rms)
                p.c_layernorm = RMSNorm(d_state, bcdt_rms)

    @property
    def causal(self):
        return len(self.directions) == 1

    def scan_params(self, direction):
        """The Module holding a direction's conv, x_proj, dt_proj, A_log and D."""
        return self if direction is self.directions[0] else getattr(self, f"scan_{direction.name}")

    def refuse_decoding(self):
        if not self.causal:
            raise ValueError(f"mamba: directions={len(self.directions)} scans read later tokens (a non-causal "
                             f"mixer, for images), so it cannot decode token by token (init_state, step, "
                             f"prefill); only directions=1 decodes")

    def forward(self, u, state=None, side=None):
        """u (B,T,D) -> (B,T,D). With a decode state (directions=1 only) the conv starts from its
        `conv` inputs and the scan from its `ssm` state, and both are left at the end of u (a prefill,
        in one piece or in chunks); the backward then gives the gradient of u alone."""
        self.check_input(u)
        if state is not None:
            self.refuse_decoding()
        din = self.d_inner
        grid = self.scan_grid(u.shape[1])
        xz = self.in_proj.forward(u)
        x_in, z = np.ascontiguousarray(xz[..., :din]), np.ascontiguousarray(xz[..., din:])
        prefix, h0 = self.scan_start(state)
        y = None
        for direction in self.directions:
            y_dir, h_last = self.scan_forward(direction, to_scan(self.be, x_in, direction, grid), prefix, h0)
            y_dir = from_scan(self.be, y_dir, direction, grid)
            y = y_dir if y is None else y + y_dir
        if len(self.directions) > 1:
            y *= 1.0 / len(self.directions)
        self.scan_leave(state, x_in, h_last)
        self.save(z, y, grid)
        return self.out_proj.forward(self.be.silu_gate_forward(y, z))

    def backward(self, dout):
        z, y, grid = self.saved()
        dgated = self.out_proj.backward(dout)
        dy, dz = self.be.silu_gate_backward(dgated, y, z)
        if len(self.directions) > 1:
            dy *= 1.0 / len(self.directions)
        dx_in = None
        for direction in reversed(self.directions):
            dx_dir = self.scan_backward(direction, to_scan(self.be, dy, direction, grid))
            dx_dir = from_scan(self.be, dx_dir, direction, grid)
            dx_in = dx_dir if dx_in is None else dx_in + dx_dir
        return self.in_proj.backward(np.concatenate([dx_in, dz], axis=-1))

    def scan_grid(self, T):
        """(H, W) of the patch grid for a cross scan of sequences of which this process holds T tokens
        (None for directions 1 and 2)."""
        if not any(d.transpose for d in self.directions):
            return None
        return patch_grid(self.be.sequence_length(T), self.grid)

    def scan_forward(self, direction, x_in, prefix=None, h0=None):
        """One direction, x_in (B,T,Din) in its scan order -> (y (B,T,Din), h_last): conv, SiLU, the
        projections and the selective scan, on the backend's time reversal for a backward direction."""
        p = self.scan_params(direction)
        be = self.be.time_reversed() if direction.reverse else self.be
        x_conv = be.causal_conv1d_forward(x_in, p.conv_weight.data, p.conv_bias.data, prefix)
        x = self.be.silu_forward(x_conv)
        dt, Bm, Cm = self.split_dbc(p.x_proj.forward(x))
        if self.bcdt_rms is not None:
            dt, Bm, Cm = p.dt_layernorm.forward(dt), p.b_layernorm.forward(Bm), p.c_layernorm.forward(Cm)
        dt_lin = p.dt_proj.forward(dt)
        delta = self.be.softplus_forward(dt_lin)
        A = -np.exp(p.A_log.data)
        y, h_last, heads = self.scan_heads(be, x, delta, A, Bm, Cm, p.D.data, h0)
        self.save(x_in, x_conv, dt_lin, A, heads, prefix)
        return y, h_last

    def scan_backward(self, direction, dy):
        """The gradient of scan_forward's x_in from its dy (both in the scan order); adds the
        direction's parameter gradients."""
        p = self.scan_params(direction)
        be = self.be.time_reversed() if direction.reverse else self.be
        x_in, x_conv, dt_lin, A, heads, prefix = self.saved()
        dx, ddelta, dA, dBm, dCm, dD = self.scan_heads_backward(be, dy, heads)
        p.A_log.grad += dA * A  # ∂A/∂A_log = −exp(A_log) = A
        p.D.grad += dD
        ddt = p.dt_proj.backward(self.be.softplus_backward(ddelta, dt_lin))
        if self.bcdt_rms is not None:
            ddt, dBm, dCm = p.dt_layernorm.backward(ddt), p.b_layernorm.backward(dBm), p.c_layernorm.backward(dCm)
        dx = dx + p.x_proj.backward(self.join_dbc(ddt, dBm, dCm))
        dx_conv = self.be.silu_backward(dx, x_conv)
        dx_in, dw, db, _ = be.causal_conv1d_backward(dx_conv, x_in, p.conv_weight.data, True, prefix)
        p.conv_weight.grad += dw
        p.conv_bias.grad += db
        return dx_in

    def split_dbc(self, dbc):
        """x_proj's output (..., H·(R+2N)) -> dt (..., H·R), B, C (..., H, N) each (per head [dt_h | B_h | C_h];
        with one head B, C are (..., N))."""
        H, R, N = self.heads, self.dt_rank, self.d_state
        per_head = dbc.reshape(*dbc.shape[:-1], H, R + 2 * N)
        dt = np.ascontiguousarray(per_head[..., :R]).reshape(*dbc.shape[:-1], H * R)
        Bm, Cm = (np.ascontiguousarray(per_head[..., i:i + N]) for i in (R, R + N))
        return (dt, Bm[..., 0, :], Cm[..., 0, :]) if H == 1 else (dt, Bm, Cm)

    def join_dbc(self, ddt, dBm, dCm):
        """split_dbc's adjoint: the gradients of dt, B, C -> that of x_proj's output."""
        H = self.heads
        lead = ddt.shape[:-1]
        dBm, dCm = dBm.reshape(*lead, H, -1), dCm.reshape(*lead, H, -1)
        return np.concatenate([ddt.reshape(*lead, H, -1), dBm, dCm], axis=-1).reshape(*lead, -1)

    def _head_slices(self, x, delta, A, Bm, Cm, D, h0):
        """Per head: its channels of x, delta (B,T,Dh), A (Dh,N), its B, C (B,T,N), D (Dh,), h0 (B,Dh,N)."""
        H, Dh = self.heads, self.d_inner // self.heads
        for h in range(H):
            c = slice(h * Dh, (h + 1) * Dh)
            yield (np.ascontiguousarray(x[..., c]), np.ascontiguousarray(delta[..., c]), np.ascontiguousarray(A[c]),
                   Bm if H == 1 else np.ascontiguousarray(Bm[..., h, :]),
                   Cm if H == 1 else np.ascontiguousarray(Cm[..., h, :]), np.ascontiguousarray(D[c]),
                   None if h0 is None else np.ascontiguousarray(h0[:, c]))

    def scan_heads(self, be, x, delta, A, Bm, Cm, D, h0):
        """The selective scan of each head on its channels: x, delta (B,T,Din), A (Din,N), B, C as split_dbc
        gives them, D (Din,), h0 (B,Din,N) or None -> y (B,T,Din), h_last (B,Din,N), and the heads' scan
        arguments, which scan_heads_backward takes (the very arrays: the MPI backend finds a forward by them)."""
        heads = list(self._head_slices(x, delta, A, Bm, Cm, D, h0))
        out = [be.selective_scan_forward(*args) for args in heads]
        if len(out) == 1:
            return (*out[0], heads)
        return np.concatenate([y for y, _ in out], axis=-1), np.concatenate([h for _, h in out], axis=1), heads

    def scan_heads_backward(self, be, dy, heads):
        """scan_heads' backward from the heads' arguments it returned: -> dx, ddelta (B,T,Din), dA (Din,N), dB,
        dC (as split_dbc gives B, C), dD (Din,)."""
        H, Dh = self.heads, self.d_inner // self.heads
        grads = [be.selective_scan_backward(np.ascontiguousarray(dy[..., h * Dh:(h + 1) * Dh]), *args)[:6]
                 for h, args in enumerate(heads)]
        if H == 1:
            return grads[0]
        dx, ddelta, dA, dBm, dCm, dD = zip(*grads)
        cat = lambda parts: np.concatenate(parts, axis=-1)
        return cat(dx), cat(ddelta), np.concatenate(dA), np.stack(dBm, axis=-2), np.stack(dCm, axis=-2), cat(dD)

    # -- decoding (directions=1) -----------------------------------------------
    def init_state(self, batch, max_len=None, dtype=np.float32):
        """Zeros: conv (B, d_conv−1, Din) and ssm (B, Din, N); max_len is not needed (constant-size state)."""
        self.refuse_decoding()
        W = self.conv_weight.shape[1]
        return {"conv": np.zeros((batch, W - 1, self.d_inner), dtype),
                "ssm": np.zeros((batch, self.d_inner, self.d_state), dtype)}

    @staticmethod
    def scan_start(state):
        """(prefix, h0) a prefill's conv and scan start from: the decode state's (copies), or None without one."""
        if state is None:
            return None, None
        return (state["conv"].copy() if state["conv"].shape[1] else None), state["ssm"].copy()

    @classmethod
    def scan_leave(cls, state, x_in, h_last):
        """Leave the decode state (if any) at the end of a prefill's conv inputs x_in (B,T,Din) and scan."""
        if state is not None:
            cls._fill_conv_state(state["conv"], x_in)
            state["ssm"][...] = h_last

    @staticmethod
    def _fill_conv_state(conv, x_in):
        """conv (B,W−1,Din) <- the last W−1 conv inputs of x_in (B,T,Din), after what conv held (zeros
        for a fresh state) when T < W−1."""
        keep = conv.shape[1]
        if keep:
            conv[...] = np.concatenate([conv, x_in], axis=1)[:, -keep:]

    def step(self, u, state, side=None):
        """One token per stream: u (B,D) -> (B,D); updates state in place."""
        self.check_input(u, 2)
        self.refuse_decoding()
        din = self.d_inner
        xz = self.in_proj.step(u)
        x_in, z = np.ascontiguousarray(xz[:, :din]), np.ascontiguousarray(xz[:, din:])
        return self.out_proj.step(self.be.silu_gate_forward(self.scan_step(x_in, state), z))

    def scan_step(self, x_in, state):
        """The part of a step from the conv to the scan: x_in (B,Din) -> y (B,Din); updates state in place."""
        x_conv = self.be.causal_conv1d_forward(x_in[:, None], self.conv_weight.data, self.conv_bias.data,
                                               prefix=state["conv"] if state["conv"].shape[1] else None)
        self._fill_conv_state(state["conv"], x_in[:, None])
        x = self.be.silu_forward(x_conv[:, 0])
        dt, Bm, Cm = self.split_dbc(self.x_proj.step(x))
        if self.bcdt_rms is not None:
            dt, Bm, Cm = self.dt_layernorm.step(dt), self.b_layernorm.step(Bm), self.c_layernorm.step(Cm)
        delta = self.be.softplus_forward(self.dt_proj.step(dt))
        y, h, _ = self.scan_heads(self.be, x[:, None], delta[:, None], -np.exp(self.A_log.data), Bm[:, None],
                                  Cm[:, None], self.D.data, state["ssm"])
        state["ssm"][...] = h
        return y[:, 0]

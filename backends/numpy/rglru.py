"""The gates of Griffin's RG-LRU (De et al. 2024, eq. 1-4; recurrentgemma's RGLRU): from the gate
pre-activations to the decay a_t and the normalised input of the diagonal linear recurrence
h_t = a_t ⊙ h_{t−1} + x̃_t (backends/numpy/linear_recurrence.py).

    r_t = σ(ga_t),  i_t = σ(gx_t)                       recurrence and input gates
    log a_t = −c r_t softplus(Λ),  c = 8                  a_t = σ(−Λ)^(c r_t) ∈ (0, 1]
    x̃_t = √(1 − a_t²) ⊙ (i_t ⊙ x_t),  the multiplier 1 at position 0

x, gx, ga (B,T,C), Λ = a_param (C,). Position 0 is the global position: token t stands at
time_offset + t, so a chunked prefill or a slice of the sequence passes the position of its first
token (as RoPE's offset), and only the true first token of a sequence skips the √(1 − a²) normalisation.
"""
import numpy as np

from ..validate import check_scalars

C_GATE = 8.0
# recurrentgemma's SqrtBoundDerivative: d√y/dy is taken as 1/√max(4y, 1/1000²), so its magnitude is at
# most 1000 as a_t -> 1 (the exact 1/(2√y) is infinite at a_t = 1, where float32 rounds a strong gate).
SQRT_GRAD_MAX = 1000.0


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _softplus(z):
    """log(1 + eᶻ), and z itself above 20 (torch's threshold, as the softplus op)."""
    return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20))))


def _gates(x, gx, ga, a_param, time_offset):
    r, i = _sigmoid(ga), _sigmoid(gx)
    a = np.exp(-C_GATE * r * _softplus(a_param))
    y = 1.0 - a * a
    m = np.sqrt(y)
    first = (time_offset + np.arange(x.shape[1]) == 0)[None, :, None]  # the sequence's position 0
    return r, i, a, y, np.where(first, 1.0, m).astype(x.dtype), first


def rglru_gate_forward(x, gx, ga, a_param, time_offset=0):
    """-> a (B,T,C) the decays, xn (B,T,C) = x̃ the recurrence's input."""
    time_offset, = check_scalars("rglru_gate_forward", time_offset=time_offset)
    _, i, a, _, m, _ = _gates(x, gx, ga, a_param, time_offset)
    return a, m * i * x


def rglru_gate_backward(da, dxn, x, gx, ga, a_param, time_offset=0):
    """Gradients of the forward's inputs from those of a and xn:

        dx = dxn ⊙ m ⊙ i               dgx = dxn ⊙ x ⊙ m ⊙ i (1 − i)
        ∂a = da − 2a ⊙ (dxn ⊙ i ⊙ x) / √max(4(1 − a²), 1/1000²)   (0 from the multiplier at position 0)
        dga = ∂a ⊙ a ⊙ (−c softplus(Λ)) ⊙ r (1 − r)   dΛ = Σ_{b,t} ∂a ⊙ a ⊙ (−c r) ⊙ σ(Λ)

    -> dx, dgx, dga (B,T,C), da_param (C,)."""
    time_offset, = check_scalars("rglru_gate_backward", time_offset=time_offset)
    r, i, a, y, m, first = _gates(x, gx, ga, a_param, time_offset)
    dm = np.where(first, 0.0, dxn * i * x)
    dlog_a = (da - 2.0 * a * dm / np.sqrt(np.maximum(4.0 * y, SQRT_GRAD_MAX ** -2))) * a
    dga = dlog_a * (-C_GATE * _softplus(a_param)) * r * (1.0 - r)
    da_param = (dlog_a * (-C_GATE) * r).sum(axis=(0, 1)) * _sigmoid(a_param)
    dx = dxn * m * i
    return dx.astype(x.dtype), (dxn * x * m * i * (1.0 - i)).astype(x.dtype), dga.astype(x.dtype), \
        da_param.astype(x.dtype)

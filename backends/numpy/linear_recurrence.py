"""The diagonal linear recurrence (Griffin's RG-LRU, LRU, S4D/S5 with a diagonal state):

    h_t = a_t ⊙ h_{t−1} + x_t,    h_{−1} = h0 (zeros if None),

per batch b and channel c, with a per-position decay a_t (B,T,C) and input x_t (B,T,C); the output
is every state, h (B,T,C). Written as an explicit loop over time on whole (B,C) rows. Any size may be
0: with T = 0 the last state is h0 (zeros if None), as in the C kernel.
"""
import numpy as np


def _state(x, s):
    """A (B,C) state: s, or zeros when s is None."""
    return np.zeros((x.shape[0], x.shape[2]), x.dtype) if s is None else s


def linear_recurrence_forward(a, x, h0=None):
    """h_t = a_t ⊙ h_{t−1} + x_t from h_{−1} = h0. a, x (B,T,C), h0 (B,C) or None
    -> h (B,T,C), h_last = h_{T−1} (B,C) (h0, or zeros, when T = 0)."""
    h = np.empty_like(x)
    prev = _state(x, h0)
    for t in range(x.shape[1]):
        prev = h[:, t] = a[:, t] * prev + x[:, t]
    return h, prev.copy()


def linear_recurrence_backward(dh, a, x, h0=None, dh_last=None):
    """Reverse-time sweep over g_t = ∂L/∂h_t = dh_t + a_{t+1} ⊙ g_{t+1}, g_{T−1} = dh_{T−1} + dh_last:

        dx_t = g_t,    da_t = g_t ⊙ h_{t−1},    dh0 = a_0 ⊙ g_0 (None when h0 is None).

    dh (B,T,C) is the gradient of the output h; dh_last (B,C) or None flows into h_last from later
    positions (with T = 0, dh0 is dh_last itself, or zeros). -> da, dx (B,T,C), dh0 (B,C) or None."""
    T = x.shape[1]
    h, _ = linear_recurrence_forward(a, x, h0)
    h_prev = np.concatenate([_state(x, h0)[:, None], h], axis=1)[:, :T]  # h_{t−1}
    dx = np.empty_like(x)
    g = _state(x, dh_last).copy()
    for t in reversed(range(T)):
        g = dx[:, t] = dh[:, t] + g
        g = a[:, t] * g
    return dx * h_prev, dx, (g if h0 is not None else None)

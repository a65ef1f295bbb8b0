"""The diagonal linear recurrence (Griffin's RG-LRU, LRU, S4D/S5 with a diagonal state):

    h_t = a_t ⊙ h_{t−1} + x_t,    h_{−1} = h0 (zeros if None),

per batch b and channel c, with a per-position decay a_t (B,T,C) and input x_t (B,T,C); the output
is every state, h (B,T,C). Written as an explicit loop over time on whole (B,C) rows.
"""
import numpy as np


def linear_recurrence_forward(a, x, h0=None):
    """h_t = a_t ⊙ h_{t−1} + x_t from h_{−1} = h0. a, x (B,T,C), h0 (B,C) or None
    -> h (B,T,C), h_last = h_{T−1} (B,C)."""
    h = np.empty_like(x)
    prev = np.zeros_like(x[:, 0]) if h0 is None else h0
    for t in range(x.shape[1]):
        prev = h[:, t] = a[:, t] * prev + x[:, t]
    return h, h[:, -1].copy()


def linear_recurrence_backward(dh, a, x, h0=None, dh_last=None):
    """Reverse-time sweep over g_t = ∂L/∂h_t = dh_t + a_{t+1} ⊙ g_{t+1}, g_{T−1} = dh_{T−1} + dh_last:

        dx_t = g_t,    da_t = g_t ⊙ h_{t−1},    dh0 = a_0 ⊙ g_0 (None when h0 is None).

    dh (B,T,C) is the gradient of the output h; dh_last (B,C) or None flows into h_last from later
    positions. -> da, dx (B,T,C), dh0 (B,C) or None."""
    h, _ = linear_recurrence_forward(a, x, h0)
    h_prev = np.concatenate([(np.zeros_like(x[:, :1]) if h0 is None else h0[:, None]), h[:, :-1]], axis=1)
    dx = np.empty_like(x)
    g = np.zeros_like(x[:, 0]) if dh_last is None else dh_last.copy()
    for t in reversed(range(x.shape[1])):
        g = dx[:, t] = dh[:, t] + g
        g = a[:, t] * g
    return dx * h_prev, dx, (g if h0 is not None else None)

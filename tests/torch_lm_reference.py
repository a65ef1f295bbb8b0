"""The character LM (hybridref/models/char_lm.py) written independently in PyTorch, with generation
through a KV cache and Mamba's recurrent state, as in mamba's `step` and HF-style KV caching.

It reads hybridref's parameter dict (same names), so one set of weights runs on both. Used by
tests/test_decode_torch.py as a cross-check and by benchmarks/bench_decode.py as the decode peer.
"""
import math

import torch
import torch.nn.functional as F


def _norm(x, p, prefix, kind):
    if kind == "layernorm":
        return F.layer_norm(x, x.shape[-1:], p[prefix + "weight"], p[prefix + "bias"], 1e-5)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * p[prefix + "weight"]


def _rope(x, pos0, base):
    """x (B,H,T,P) rotated by positions pos0.. (GPT-NeoX halves)."""
    P, T = x.shape[-1], x.shape[-2]
    theta = base ** (-torch.arange(0, P, 2, dtype=torch.float64) / P)
    ang = torch.arange(pos0, pos0 + T, dtype=torch.float64)[:, None] * theta
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., :P // 2], x[..., P // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class TorchCharLM:
    def __init__(self, params, config):
        self.p = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
        self.cfg = config
        self.H = config["n_heads"]
        self.Hk = config["n_kv_heads"] or self.H
        self.P = config["d_model"] // self.H

    def _block(self, i):
        return {k[len(f"blocks.{i}."):]: v for k, v in self.p.items() if k.startswith(f"blocks.{i}.")}

    # -- attention ---------------------------------------------------------------
    def _qkv(self, b, h, pos0):
        B, T, _ = h.shape
        H, Hk, P = self.H, self.Hk, self.P
        q, k, v = (h @ b["mixer.qkv.weight"].T).split([H * P, Hk * P, Hk * P], dim=-1)
        q, k, v = (t.reshape(B, T, -1, P).transpose(1, 2) for t in (q, k, v))
        if self.cfg["rope_base"] is not None:
            q, k = _rope(q, pos0, self.cfg["rope_base"]), _rope(k, pos0, self.cfg["rope_base"])
        return q, k, v

    def _attend(self, b, q, k, v, pos0):
        """q (B,H,Tq,P) at positions pos0.., k, v (B,Hk,Tk,P) at positions 0.."""
        Tq, Tk = q.shape[2], k.shape[2]
        k, v = k.repeat_interleave(self.H // self.Hk, 1), v.repeat_interleave(self.H // self.Hk, 1)
        i = torch.arange(pos0, pos0 + Tq)[:, None]
        j = torch.arange(Tk)[None, :]
        allowed = j <= i
        if self.cfg["window"] is not None:
            allowed = allowed & (i - j <= self.cfg["window"])
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        B = q.shape[0]
        return o.transpose(1, 2).reshape(B, Tq, -1) @ b["mixer.out.weight"].T

    # -- Mamba ------------------------------------------------------------------
    def _mamba_in(self, b, h):
        din = b["mixer.in_proj.weight"].shape[0] // 2
        xz = h @ b["mixer.in_proj.weight"].T
        return xz[..., :din], xz[..., din:]

    def _mamba_out(self, b, u, z, h_state):
        """u (B,Din) conv+SiLU output of one token; advances h_state (B,Din,N) in place."""
        N = self.cfg["d_state"]
        R = b["mixer.dt_proj.weight"].shape[1]
        dbc = u @ b["mixer.x_proj.weight"].T
        dt, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
        delta = F.softplus(dt @ b["mixer.dt_proj.weight"].T + b["mixer.dt_proj.bias"])
        A = -torch.exp(b["mixer.A_log"])
        h_state.mul_(torch.exp(delta[..., None] * A)).add_(delta[..., None] * Bm[:, None, :] * u[..., None])
        y = (h_state * Cm[:, None, :]).sum(-1) + b["mixer.D"] * u
        return (y * F.silu(z)) @ b["mixer.out_proj.weight"].T

    # -- model ------------------------------------------------------------------
    def forward(self, ids):
        """ids (B,T) -> logits (B,T,V), the parallel forward (Mamba as a loop over time)."""
        x = self.p["embed.weight"][ids]
        B, T, _ = x.shape
        for i, kind in enumerate(self.cfg["pattern"]):
            b = self._block(i)
            h = _norm(x, b, "norm1.", self.cfg["norm"])
            if kind == "A":
                q, k, v = self._qkv(b, h, 0)
                x = x + self._attend(b, q, k, v, 0)
            else:
                xs, z = self._mamba_in(b, h)
                W = b["mixer.conv_weight"].shape[1]
                u = F.silu(F.conv1d(xs.transpose(1, 2), b["mixer.conv_weight"][:, None, :], b["mixer.conv_bias"],
                                    padding=W - 1, groups=xs.shape[-1])[..., :T].transpose(1, 2))
                hs = torch.zeros(B, xs.shape[-1], self.cfg["d_state"])
                x = x + torch.stack([self._mamba_out(b, u[:, t], z[:, t], hs) for t in range(T)], 1)
            x = self._mlp(b, x)
        return _norm(x, self.p, "norm.", self.cfg["norm"]) @ self.p["head.weight"].T

    def _mlp(self, b, x):
        if "mlp.fc.weight" not in b:
            return x
        h = _norm(x, b, "norm2.", self.cfg["norm"])
        return x + F.gelu(h @ b["mlp.fc.weight"].T + b["mlp.fc.bias"], approximate="tanh") @ b["mlp.proj.weight"].T \
            + b["mlp.proj.bias"]

    def init_state(self, batch, max_len, pos=0, fill=None):
        """Per layer: KV cache (B,Hk,L,P) or (conv (B,Din,W−1), ssm (B,Din,N)); `fill` (a torch
        Generator) fills them with random values, for benchmarks that start at position `pos`."""
        states = []
        for i, kind in enumerate(self.cfg["pattern"]):
            b = self._block(i)
            if kind == "A":
                shapes = [(batch, self.Hk, max_len, self.P)] * 2
            else:
                din, W = b["mixer.conv_weight"].shape
                shapes = [(batch, din, W - 1), (batch, din, self.cfg["d_state"])]
            states.append([torch.randn(s, generator=fill) if fill is not None else torch.zeros(s) for s in shapes])
        return {"pos": pos, "layers": states}

    def step(self, ids, state):
        """ids (B,) -> logits (B,V), advancing `state` by one token."""
        pos = state["pos"]
        x = self.p["embed.weight"][ids][:, None]  # (B,1,D)
        for i, kind in enumerate(self.cfg["pattern"]):
            b, st = self._block(i), state["layers"][i]
            h = _norm(x, b, "norm1.", self.cfg["norm"])
            if kind == "A":
                if pos >= st[0].shape[2]:
                    raise ValueError(f"KV cache full ({st[0].shape[2]} tokens)")
                q, k, v = self._qkv(b, h, pos)
                st[0][:, :, pos:pos + 1] = k
                st[1][:, :, pos:pos + 1] = v
                x = x + self._attend(b, q, st[0][:, :, :pos + 1], st[1][:, :, :pos + 1], pos)
            else:
                xs, z = self._mamba_in(b, h[:, 0])
                conv, hs = st
                window = torch.cat([conv, xs[..., None]], dim=-1)  # (B,Din,W)
                u = F.silu((window * b["mixer.conv_weight"]).sum(-1) + b["mixer.conv_bias"])
                conv.copy_(window[..., 1:])
                x = x + self._mamba_out(b, u, z, hs)[:, None]
            x = self._mlp(b, x)
        state["pos"] = pos + 1
        return (_norm(x, self.p, "norm.", self.cfg["norm"]) @ self.p["head.weight"].T)[:, 0]

"""Zamba's hybrid layer in PyTorch (transformers' ZambaHybridLayer without the residual addition, which the
block makes), from the formulas:

    t   = Z(u, e)                    the shared block's call on the raw residual stream u (tests/torch_ref/zamba.py)
    out = Mamba(RMSNorm(u + t))      the Mamba layer after it (tests/torch_ref/mamba.py; mamba_heads heads)

The call's parameters are "call.…", the norm's "norm.weight", the Mamba's "mamba.…"; the block has no norm1
(the layer reads u itself). opts: the Z block's and the Mamba's.
"""
from . import mamba, zamba


def _parts(p):
    call = {k[len("call."):]: v for k, v in p.items() if k.startswith("call.")}
    return call, {k[len("mamba."):]: v for k, v in p.items() if k.startswith("mamba.")}


def forward(p, u, opts, side=None):
    call, mp = _parts(p)
    return mamba.forward(mp, zamba.rmsnorm(u + zamba.forward(call, u, opts, side), p["norm.weight"], opts), opts)


def init_state(p, opts, batch, max_len, fill=None):
    """The call's KV cache {"k", "v"} and the Mamba's {"conv", "ssm"}, one dict."""
    call, mp = _parts(p)
    return {**zamba.init_state(call, opts, batch, max_len, fill), **mamba.init_state(mp, opts, batch, max_len, fill)}


def step(p, u_t, state, opts, pos, side=None):
    call, mp = _parts(p)
    v = zamba.rmsnorm(u_t + zamba.step(call, u_t, state, opts, pos, side), p["norm.weight"], opts)
    return mamba.step(mp, v, state, opts, pos)

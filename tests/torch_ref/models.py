"""hybridref's models written independently in PyTorch, built from the mixer references of this
package (tests/torch_ref/<name>.py, found through the mixer registry by each letter of the pattern).

Both read hybridref's parameter dict (same names), so one set of weights runs on both:

    block:  h = x + mixer(norm1(x));  out = h + MLP(norm2(h))     (no MLP when it has width 0; mixer(x) without norm1)
    MLP:    by config["mlp_kind"]: "gelu" proj(GELU_tanh(fc(x))), "gated_gelu" (GeGLU)
            proj(GELU_tanh(W_gate x + b_gate) ⊙ (W_up x + b_up)), fc's rows [W_gate; W_up], "swiglu"
            the same with SiLU; biases only where the model has them (mlp_bias)
    norms:  RMSNorm or LayerNorm, eps 1e-5

    char_lm_forward / TorchCharLM      hybridref/models/char_lm.py: embed, blocks, norm, head
    mnist_hybrid                       hybridref/models/mnist_hybrid.py: patch embedding + learned
                                       positions, blocks, norm, mean over tokens, head

Side inputs (hybridref/layers/side.py): one dict per pass (forward or step), holding the embedding as
"embed", is passed to the mixers whose forward/step take a `side` argument (RWKV-7's value residual).

Dropout is not applied (the references are inference / dropout-0 models). Used as autograd oracles
by tests/test_torch_crosscheck.py and tests/test_decode_torch.py, and as the PyTorch peers of
benchmarks/bench_train_step.py and benchmarks/bench_decode.py.
"""
import inspect

import torch
import torch.nn.functional as F

from hybridref.layers.registry import mixer_spec

from . import mixer as mixer_module


def sub(p, prefix):
    """The entries of p under `prefix`, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


NORMS = {
    "rmsnorm": lambda x, w, b: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w,
    "layernorm": lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b, 1e-5),
}


def norm(x, p, prefix, which):
    """NORMS[which] with the weight (and bias) p[prefix + "weight"], p[prefix + "bias"]."""
    if which not in NORMS:
        raise ValueError(f"unknown norm {which!r}; known: {', '.join(NORMS)}")
    return NORMS[which](x, p[prefix + "weight"], p.get(prefix + "bias"))


def norm1(x, b, which):
    """The block's pre-norm of x, or x itself when the block has none (a mixer with pre_norm False reads the
    residual stream: Zamba's hybrid layer)."""
    return norm(x, b, "norm1.", which) if "norm1.weight" in b else x


def _linear(b, name, x):
    """x W_nameᵀ (+ b_name when the MLP has biases: mlp_bias)."""
    bias = b.get(f"{name}.bias")
    return x @ b[f"{name}.weight"].T + (0 if bias is None else bias)


def _gelu_mlp(b, x):
    return _linear(b, "mlp.proj", F.gelu(_linear(b, "mlp.fc", x), approximate="tanh"))


def _gated_gelu_mlp(b, x):
    gate, up = _linear(b, "mlp.fc", x).chunk(2, dim=-1)
    return _linear(b, "mlp.proj", F.gelu(gate, approximate="tanh") * up)


def _gated_gelu_erf_mlp(b, x):
    gate, up = _linear(b, "mlp.fc", x).chunk(2, dim=-1)
    return _linear(b, "mlp.proj", F.gelu(gate) * up)


def _swiglu_mlp(b, x):
    gate, up = _linear(b, "mlp.fc", x).chunk(2, dim=-1)
    return _linear(b, "mlp.proj", F.silu(gate) * up)


MLPS = {"gelu": _gelu_mlp, "gated_gelu": _gated_gelu_mlp, "swiglu": _swiglu_mlp, "gated_gelu_erf": _gated_gelu_erf_mlp}


def mlp(b, x, kind="gelu"):
    if kind not in MLPS:
        raise ValueError(f"unknown mlp_kind {kind!r}; known: {', '.join(MLPS)}")
    return MLPS[kind](b, x)


def mlp_residual(b, h, config, has_mlp, aux=None):
    """The second half of a pre-norm block: h + MLP(norm2(h)), or h when the block has no MLP. A block
    whose MLP is a mixture of experts (a router among its parameters) runs tests/torch_ref/moe.py's
    sparse block with the model's `moe` options and appends its router logits to `aux` (a list, for
    the auxiliary losses)."""
    if not has_mlp:
        return h
    x, kind = norm(h, b, "norm2.", config["norm"]), config.get("mlp_kind", "gelu")
    if "mlp.router.weight" in b:
        from . import moe
        y, logits = moe.forward(sub(b, "mlp."), x, kind, config["moe"]["top_k"], config["moe"]["normalize_top_k"])
        if aux is not None:
            aux.append(logits)
        return h + y
    return h + mlp(b, x, kind)


def layers(p, config):
    """Per letter of the pattern: (block params, the mixer's params, its module, its options, its depth:
    (its place among the blocks of its letter, their count), which a mixer reads as side["depth"])."""
    out, pattern = [], config["pattern"]
    for i, c in enumerate(pattern):
        b = sub(p, f"blocks.{i}.")
        depth = (pattern[:i].count(c), pattern.count(c))
        out.append((b, sub(b, "mixer."), mixer_module(mixer_spec(c).name), config["mixers"][c], depth))
    return out


def with_side(fn, *args, side):
    """fn(*args), passing the pass's side inputs to a mixer function that takes them."""
    return fn(*args, side=side) if "side" in inspect.signature(fn).parameters else fn(*args)


# -- character LM -----------------------------------------------------------------------------------
def char_lm_forward(p, ids, config, aux=None):
    """ids (B,T) -> logits (B,T,V), the parallel forward; the MoE layers' router logits appended to `aux`.
    Meta tokens (Hymba; the parameter "meta", (M,D)) are prepended to every sequence, and the logits are
    the real tokens'."""
    x = p["embed.weight"][ids]
    M = p["meta"].shape[0] if "meta" in p else 0
    if M:
        x = torch.cat([p["meta"].expand(x.shape[0], M, x.shape[2]), x], dim=1)
    side = {"embed": x, "meta_tokens": M}  # Hymba's local layers keep the meta tokens visible
    for (b, pm, mod, opts, depth), c in zip(layers(p, config), config["pattern"]):
        side["depth"] = depth
        h = x + with_side(mod.forward, pm, norm1(x, b, config["norm"]), opts, side=side)
        x = mlp_residual(b, h, config, config["mlp_hidden"][c] > 0, aux)
    return norm(x[:, M:], p, "norm.", config["norm"]) @ p["head.weight"].T


class TorchCharLM:
    """The character LM with generation: the parallel forward and one-token steps through each
    mixer's decode state (KV cache, Mamba's conv and scan states, ...)."""

    def __init__(self, params, config):
        self.p = {k: torch.from_numpy(v.copy()) for k, v in params.items()}
        self.cfg = config
        self.layers = layers(self.p, config)

    def forward(self, ids):
        return char_lm_forward(self.p, ids, self.cfg)

    def init_state(self, batch, max_len, pos=0, fill=None):
        """Per layer its mixer's state for `batch` streams of up to max_len tokens; `fill` (a torch
        Generator) fills them with random values, for benchmarks that start at position `pos`."""
        return {"pos": pos, "layers": [mod.init_state(pm, opts, batch, max_len, fill)
                                       for _, pm, mod, opts, _ in self.layers]}

    def step(self, ids, state):
        """ids (B,) -> logits (B,V), advancing `state` by one token."""
        pos, cfg = state["pos"], self.cfg
        x = self.p["embed.weight"][ids]  # (B,D)
        side = {"embed": x}
        for (b, pm, mod, opts, depth), st, c in zip(self.layers, state["layers"], cfg["pattern"]):
            side["depth"] = depth
            h = x + with_side(mod.step, pm, norm1(x, b, cfg["norm"]), st, opts, pos, side=side)
            x = mlp_residual(b, h, cfg, cfg["mlp_hidden"][c] > 0)
        state["pos"] = pos + 1
        return norm(x, self.p, "norm.", cfg["norm"]) @ self.p["head.weight"].T


# -- MNIST hybrid -----------------------------------------------------------------------------------
def mnist_hybrid(p, tokens, config):
    """tokens (B,T,p²) (already patchified and normalised) -> logits (B,10)."""
    x = tokens @ p["embed.weight"].T + p["embed.bias"] + p["pos"]
    side = {"embed": x}
    for b, pm, mod, opts, _ in layers(p, config):
        h = x + with_side(mod.forward, pm, norm1(x, b, config["norm"]), opts, side=side)
        x = mlp_residual(b, h, config, "mlp.fc.weight" in b)
    x = norm(x, p, "norm.", config["norm"]).mean(1)
    return x @ p["head.weight"].T + p["head.bias"]

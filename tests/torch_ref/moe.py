"""PyTorch reference of the mixture-of-experts MLP, written as transformers writes Mixtral's and Jamba's
sparse MoE block (MixtralSparseMoeBlock / JambaSparseMoeBlock with their TopKRouter and Experts):

    router_logits = x W_rᵀ;  p = softmax(router_logits) (float);  w, idx = topk(p, k)
    Mixtral: w /= w.sum(-1)   (Jamba: w as it is)
    for each expert hit:      token_idx = rows routed to it (torch.where on the one-hot mask)
        out.index_add_(0, token_idx, expert(x[token_idx]) * w[token_idx, slot])

with hybridref's expert MLP kinds (hybridref/layers/mlp.py: GELU with the tanh approximation, GeGLU with
the tanh or the exact GELU, SwiGLU; fc rows [W_gate; W_up]) and weights in hybridref's stacked layout (fc (E,F,D), proj (E,D,H)).
It reads the parameters of a hybridref MoE layer by their names relative to the layer
("router.weight", "experts.fc.weight", ...), so one set of weights runs on both; autograd gives the
gradients. Not a mixer (no decode state): tests/test_moe.py and benchmarks/bench_moe.py call it.

The auxiliary losses follow their papers: the balance loss as transformers' load_balancing_loss_func
(Switch Transformer eqs. 4-6, top-k form) of one layer's logits, ST-MoE's z-loss mean(logsumexp²).
"""
import torch
import torch.nn.functional as F


def params(layer):
    """{name: torch tensor} of a hybridref MoE layer's parameters (float64 or float32 as they are)."""
    return {name: torch.tensor(p.data) for name, p in layer.named_params()}


def expert_mlp(kind, x, fc_w, fc_b, proj_w, proj_b):
    """One expert of MLP kind `kind`: x (n,D) -> (n,D)."""
    h = F.linear(x, fc_w, fc_b)
    if kind == "gelu":
        a = F.gelu(h, approximate="tanh")
    else:
        gate, up = h.chunk(2, dim=-1)
        act = dict(gated_gelu=lambda g: F.gelu(g, approximate="tanh"), gated_gelu_erf=F.gelu, swiglu=F.silu)[kind]
        a = act(gate) * up
    return F.linear(a, proj_w, proj_b)


def forward(p, x, kind, top_k, normalize):
    """x (..., D) -> (y (..., D), router_logits (M, E)): the sparse MoE block, per-expert loop."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    router_logits = F.linear(x, p["router.weight"])
    probs = torch.softmax(router_logits, dim=-1, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    weights, index = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    weights = weights.to(x.dtype)
    E = p["router.weight"].shape[0]
    out = torch.zeros_like(x)
    with torch.no_grad():
        mask = F.one_hot(index, num_classes=E).permute(2, 1, 0)  # (E, k, M)
        hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for (e,) in hit.tolist():
        slot, token_idx = torch.where(mask[e])
        fc_b, proj_b = p.get("experts.fc.bias"), p.get("experts.proj.bias")
        y = expert_mlp(kind, x[token_idx], p["experts.fc.weight"][e], None if fc_b is None else fc_b[e],
                       p["experts.proj.weight"][e], None if proj_b is None else proj_b[e])
        out.index_add_(0, token_idx, y * weights[token_idx, slot, None])
    return out.reshape(shape), router_logits


def balance_loss(router_logits, top_k):
    """E · Σ_e (tokens whose top-k holds e / N) · mean_m p[m,e]: load_balancing_loss_func of one layer."""
    E = router_logits.shape[-1]
    probs = torch.softmax(router_logits, dim=-1)
    _, chosen = torch.topk(probs, top_k, dim=-1)
    tokens = F.one_hot(chosen, E).sum(dim=1).to(probs.dtype).mean(dim=0)
    return E * torch.sum(tokens * probs.mean(dim=0))


def z_loss(router_logits):
    """ST-MoE's router z-loss: mean over tokens of logsumexp(logits)²."""
    return torch.logsumexp(router_logits, dim=-1).square().mean()

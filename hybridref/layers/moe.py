"""Mixture-of-experts MLP (Mixtral; Jamba's MoE layers), dropless, in a block's MLP slot.

    logits  = x W_r                                    x (M,D), W_r (E,D), no bias
    p       = softmax(logits)                          (M,E)
    experts = top-k of p per token                     ties to the lowest index
    w       = p at the experts                         (Jamba: as they are; Mixtral: / their sum)
    y[m]    = Σ_j w[m,j] · MLP_{experts[m,j]}(x[m])    every expert an MLP of the model's mlp_kind

Dropless: every token reaches its k experts, whatever their load (no capacity, nothing dropped). The
token rows are grouped by expert (moe_dispatch, a counting sort), each expert runs its MLP on its
contiguous rows (moe_expert_linear: one GEMM per expert and weight, the grouped GEMM), and the rows
return to their tokens weighted (moe_combine).

The combine weights: Jamba's JambaTopKRouter takes softmax then top-k and leaves the k weights as they
are (they sum to less than 1); Mixtral's MixtralTopKRouter divides them by their sum. The default is
Jamba's (normalize_top_k False): the hybrids here are Jamba-like, and unnormalized weights keep the
router's gradient from the main loss even at top_k 1 (normalized, a single weight is always 1).

Auxiliary losses, per MoE layer over the tokens of a step (N of them, all processes together):
    balance = E · Σ_e (c_e / N) · P_e      c_e: tokens whose top-k holds e, P_e = mean_m p[m,e]
    z       = mean_m (log Σ_e exp logits[m,e])²                   (ST-MoE's router z-loss)
`balance` is transformers' load_balancing_loss_func (Switch Transformer eqs. 4-6, the top-k form of
Mixtral/Jamba) of this layer's logits: k at perfect balance, E·k at worst; c_e does not depend on the
weights (an argmax), its gradient flows through P_e. The model's aux_loss() is Σ over MoE layers of
aux_loss_coef · balance + z_loss_coef · z (Switch Transformer sums it over layers; transformers forms
one balance over the layers' concatenated tokens, the same for one layer). The trainers add it to the
loss they optimize; its gradient enters here: the layer's backward adds coef · ∂(balance, z)/∂logits
(moe_route_backward's aux_dprobs and z_scale) to the router's gradient. So aux_loss() must be part of
the loss whose gradient the backward computes — a trainer that left it out would train with it anyway.

Under a backend spread over processes (MPI), c_e, Σ_m p[m,e], N and Σ_m lse² are summed over the
processes (be.all_sum) before the losses are formed: every process sees the global statistics, and the
gradient of its tokens uses the global N and c_e, so training equals one process.

The experts: E MLPs of the model's kind (hybridref/layers/mlp.py), drawn as E dense MLPs would be, then
stacked: the kind's own forward/backward/step run once on the grouped rows with its `fc` and `proj`
replaced by GroupedLinear layers (one weight per expert). A kind whose parameters are not exactly
fc and proj cannot be grouped this way and is refused by name.
"""
import numpy as np

from .linear import Linear
from .mlp import MLP_KINDS, check_mlp_kind
from .module import Module, Param

MOE_DEFAULTS = dict(n_experts=8, top_k=2, period=2, offset=1, aux_loss_coef=0.01, z_loss_coef=0.0,
                    normalize_top_k=False)
MAX_EXPERTS = 4096  # far above any model this implementation runs: a damaged config must not size weights


def normalize_moe(moe):
    """The full MoE option dict of a model config (defaults filled in), or None (dense everywhere).
    ValueError naming the option for anything else: period >= 1, 0 <= offset < period (as Jamba's
    expert_layer_period / expert_layer_offset), 1 <= top_k <= n_experts, coefficients finite >= 0."""
    if moe is None:
        return None
    if not isinstance(moe, dict):
        raise ValueError(f"moe must be None or a dict of options ({', '.join(MOE_DEFAULTS)}), got {moe!r}")
    unknown = sorted(set(moe) - set(MOE_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown moe option(s) {unknown}; known: {', '.join(MOE_DEFAULTS)}")
    out = {**MOE_DEFAULTS, **moe}
    for name in ("n_experts", "top_k", "period", "offset"):
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v <= MAX_EXPERTS:
            raise ValueError(f"moe option {name} must be a whole number from 0 to {MAX_EXPERTS}, got {v!r}")
        out[name] = int(v)
    if out["n_experts"] < 1:
        raise ValueError("moe option n_experts must be at least 1 (zero experts route nowhere)")
    if not 1 <= out["top_k"] <= out["n_experts"]:
        raise ValueError(f"moe option top_k must be from 1 to n_experts = {out['n_experts']}, got {out['top_k']}")
    if out["period"] < 1 or out["offset"] >= out["period"]:
        raise ValueError(f"moe options need period >= 1 and 0 <= offset < period (block i is MoE when "
                         f"i % period == offset), got period {out['period']}, offset {out['offset']}")
    for name in ("aux_loss_coef", "z_loss_coef"):
        v = out[name]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not np.isfinite(v) or v < 0:
            raise ValueError(f"moe option {name} must be a finite number >= 0, got {v!r}")
        out[name] = float(v)
    if not isinstance(out["normalize_top_k"], bool):
        raise ValueError(f"moe option normalize_top_k must be true or false, got {out['normalize_top_k']!r}")
    return out


def is_moe_block(index, moe):
    """Block `index` holds an MoE MLP: index % period == offset (Jamba's layers_num_experts)."""
    return moe is not None and index % moe["period"] == moe["offset"]


class ExpertGroups:
    """The grouping of the current pass, shared by an expert set's GroupedLinear layers: expert e owns
    rows offsets[e]:offsets[e+1] of the grouped array."""
    offsets = None


class GroupedLinear(Module):
    """E linears, one per expert, each on its rows of the grouped input: y[r] = x[r] W[e]ᵀ + b[e].
    The weights of E Linear layers stacked: W (E, d_out, d_in), b (E, d_out) or None (no biases)."""

    def __init__(self, linears, groups):
        super().__init__()
        self.groups = groups
        self.d_in, self.d_out = linears[0].d_in, linears[0].d_out
        self.weight = Param(np.stack([lin.weight.data for lin in linears]))
        self.bias = None if linears[0].bias is None else Param(np.stack([lin.bias.data for lin in linears]),
                                                                 decay=False)

    def _b(self):
        return None if self.bias is None else self.bias.data

    def forward(self, x):
        offsets = self.groups.offsets
        self.save(x, offsets)
        return self.be.moe_expert_linear_forward(x, offsets, self.weight.data, self._b())

    def backward(self, dy):
        x, offsets = self.saved()
        dx, dw, db = self.be.moe_expert_linear_backward(np.ascontiguousarray(dy), x, offsets, self.weight.data,
                                                        self.bias is not None)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def step(self, x):
        return self.be.moe_expert_linear_forward(x, self.groups.offsets, self.weight.data, self._b())


def make_experts(kind, n_experts, d, hidden, rng, out_std=None, bias=True):
    """(the expert MLP of kind `kind` whose fc and proj are GroupedLinear, its ExpertGroups)."""
    mlps = [MLP_KINDS[check_mlp_kind(kind)](d, hidden, rng, out_std=out_std, bias=bias) for _ in range(n_experts)]
    runner = mlps[0]
    if ({name for name, _ in runner.children()} != {"fc", "proj"}
            or {name for name, _ in runner.named_params()} - {"fc.weight", "fc.bias", "proj.weight", "proj.bias"}):
        raise ValueError(f"mlp_kind {kind!r} cannot be a mixture of experts: its layers are not exactly the "
                         f"Linear layers fc and proj, which the grouped expert GEMM stacks per expert")
    groups = ExpertGroups()
    runner.fc = GroupedLinear([m.fc for m in mlps], groups)
    runner.proj = GroupedLinear([m.proj for m in mlps], groups)
    return runner, groups


class MoE(Module):
    kind = "moe"

    def __init__(self, d, hidden, rng, out_std=None, bias=True, *, expert_kind="gelu", n_experts=8, top_k=2,
                 aux_loss_coef=0.01, z_loss_coef=0.0, normalize_top_k=False):
        """E experts of kind `expert_kind`, each `hidden` wide, with biases unless bias is False; router
        W_r ~ N(0, 0.02²) (Mixtral's and Jamba's initializer_range)."""
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"MoE: top_k must be from 1 to n_experts = {n_experts}, got {top_k}")
        self.d, self.hidden, self.expert_kind = d, hidden, expert_kind
        self.n_experts, self.top_k, self.normalize = n_experts, top_k, normalize_top_k
        self.aux_loss_coef, self.z_loss_coef = aux_loss_coef, z_loss_coef
        self.experts, self.groups = make_experts(expert_kind, n_experts, d, hidden, rng, out_std, bias)
        self.router = Linear(d, n_experts, bias=False, rng=rng, std=0.02)
        self.balance = self.z = 0.0  # the last forward's losses (float64, over every process's tokens)
        self.load = np.zeros(n_experts)  # the last forward's fraction of routed tokens per expert

    def _route(self, x2):
        logits = self.router.forward(x2)
        return self.be.moe_route_forward(logits, self.top_k, self.normalize)

    def forward(self, x):
        """x (..., D) -> (..., D); sets balance, z and load from the statistics of all processes."""
        x2 = np.ascontiguousarray(x).reshape(-1, self.d)
        experts, weights, probs, lse, stats = self._route(x2)
        E = self.n_experts
        stats = self.be.all_sum(stats)
        counts, prob_sums, n, lse_sq = stats[:E], stats[E:2 * E], stats[2 * E], stats[2 * E + 1]
        if n > 0:
            self.balance = float(E * np.sum(counts / n * prob_sums / n))
            self.z = float(lse_sq / n)
            self.load = counts / (n * self.top_k)
        else:  # no tokens anywhere: nothing to balance
            self.balance, self.z, self.load = 0.0, 0.0, np.zeros(E)
        xs, slot_pos, offsets = self.be.moe_dispatch_forward(x2, experts, E)
        self.groups.offsets = offsets
        ys = self.experts.forward(xs)
        self.save(experts, weights, probs, lse, slot_pos, ys, counts, n, x.shape)
        return self.be.moe_combine_forward(ys, slot_pos, weights).reshape(x.shape)

    def aux_loss(self):
        """aux_loss_coef · balance + z_loss_coef · z of the last forward."""
        return self.aux_loss_coef * self.balance + self.z_loss_coef * self.z

    def backward(self, dy):
        experts, weights, probs, lse, slot_pos, ys, counts, n, shape = self.saved()
        dys, dweights = self.be.moe_combine_backward(np.ascontiguousarray(dy).reshape(-1, self.d), ys, slot_pos,
                                                     weights)
        dx = self.be.moe_dispatch_backward(self.experts.backward(dys), slot_pos)
        # ∂balance/∂p[m,e] = E c_e / N² (c_e held constant); ∂z/∂lse[m] = 2 lse[m] / N
        scale = 1.0 / n if n > 0 else 0.0
        aux_dprobs = (self.aux_loss_coef * self.n_experts * counts * scale * scale).astype(probs.dtype)
        dlogits = self.be.moe_route_backward(dweights, experts, probs, lse, aux_dprobs,
                                             2.0 * self.z_loss_coef * scale, self.normalize)
        return (dx + self.router.backward(dlogits)).reshape(shape)

    def step(self, x):
        """Stateless: one token per stream, x (B, D) -> (B, D)."""
        experts, weights, _, _, _ = self.be.moe_route_forward(self.router.step(x), self.top_k, self.normalize)
        xs, slot_pos, offsets = self.be.moe_dispatch_forward(x, experts, self.n_experts)
        self.groups.offsets = offsets
        return self.be.moe_combine_forward(self.experts.step(xs), slot_pos, weights)


def make_moe(moe, expert_kind, d, hidden, rng, out_std=None, bias=True):
    """The MoE MLP of the normalized options `moe` (normalize_moe), experts of kind `expert_kind`."""
    return MoE(d, hidden, rng, out_std, bias, expert_kind=expert_kind, n_experts=moe["n_experts"], top_k=moe["top_k"],
               aux_loss_coef=moe["aux_loss_coef"], z_loss_coef=moe["z_loss_coef"],
               normalize_top_k=moe["normalize_top_k"])


def moe_layers(model):
    """The MoE layers of a model, in block order."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def aux_loss(model):
    """Σ over the model's MoE layers of their aux_loss() (0.0 for a dense model)."""
    return float(sum(m.aux_loss() for m in moe_layers(model)))


def moe_report(model):
    """{} for a dense model; else the last forward's aux_loss (weighted, summed over MoE layers) and
    expert_load: per MoE layer the fraction of routed tokens each expert received (1/n_experts each at
    perfect balance). Trainers read it after a training step, before evaluation runs other forwards."""
    layers = moe_layers(model)
    if not layers:
        return {}
    return dict(aux_loss=aux_loss(model), expert_load=[[round(float(f), 4) for f in m.load] for m in layers])


def parse_moe_option(text):
    """The --moe option of `hybridref train shakespeare`: 'default' or comma-separated name=value pairs
    (n_experts=8,top_k=2,period=2,offset=1,aux_loss_coef=0.01,z_loss_coef=0,normalize_top_k=false) ->
    the normalized options (ValueError naming a bad entry)."""
    if text.strip() == "default":
        return normalize_moe({})
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in MOE_DEFAULTS:
            raise ValueError(f"--moe takes 'default' or name=value pairs of {', '.join(MOE_DEFAULTS)}; got {item!r}")
        kind = type(MOE_DEFAULTS[name])
        value = value.strip()
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[name] = value.lower() in ("true", "1")
            else:
                out[name] = kind(value)
        except ValueError:
            raise ValueError(f"--moe {name} must be a {kind.__name__}, got {value!r}") from None
    return normalize_moe(out)

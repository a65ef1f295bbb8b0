"""What a user reads before choosing a model: the presets' sizes and decode memory (`hybridref models`)
and one model's layer table (`hybridref describe --arch NAME`).

Decode state memory is measured, not derived: it is the bytes of the arrays `CharLM.init_state(1, L)`
creates (KV caches, scan and conv states, Hyena's histories, ...). Every state here is affine in the
context L once L passes the windows (a ring of window + 1 rows stops growing), so two lengths past
them, L₁ = 512 and L₂ = 1,024 (within Hyena's l_max), give

    per token of context = (bytes(L₂) − bytes(L₁)) / (L₂ − L₁)      fixed = bytes(L₁) − L₁ · per token

for one stream (B streams hold B times as much). A model whose state cannot reach a context (Hyena's
filter covers l_max positions) reports its limit.
"""
import numpy as np

from .models.char_lm import PRESETS, CharLM

L1, L2 = 512, 1024
VOCAB = 65  # Tiny Shakespeare's characters: the size the README's tables use


def state_bytes(state):
    """Bytes of the arrays of a decode state (nested dicts and lists of arrays and counters)."""
    if isinstance(state, np.ndarray):
        return state.nbytes
    if isinstance(state, dict):
        return sum(state_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_bytes(v) for v in state)
    return 0


def context_limit(model):
    """The longest context the model's decode states hold (None: no limit of their own)."""
    limits = [m.l_max for m in (b.mixer for b in model.blocks) if hasattr(m, "l_max")]
    return min(limits) if limits else None


def decode_memory(model):
    """(bytes per token of context, fixed bytes) of one stream's decode state (module docstring)."""
    b1, b2 = (state_bytes(model.init_state(1, n)) for n in (L1, L2))
    per_token = (b2 - b1) / (L2 - L1)
    return per_token, b1 - L1 * per_token


def state_at(model, context):
    """Decode state bytes of one stream at `context` tokens, or None past the model's context limit."""
    limit = context_limit(model)
    if limit is not None and context > limit:
        return None
    per_token, fixed = decode_memory(model)
    return fixed + per_token * context


def models_table():
    """One row per preset: name, pattern, parameters, decode state per token and fixed, at 4,096 and 32,768."""
    rows = []
    for name in PRESETS:
        model = CharLM.preset(name, VOCAB).to("numpy")  # Hyena computes its filter into its state
        per_token, fixed = decode_memory(model)
        rows.append(dict(name=name, pattern=model.config["pattern"], params=model.num_params(),
                         state_bytes_per_token=per_token, state_bytes_fixed=fixed,
                         state_bytes_4096=state_at(model, 4096), state_bytes_32768=state_at(model, 32768),
                         context_limit=context_limit(model)))
    return rows


def _shapes(state):
    """'name (shape), ...' of a layer's decode state."""
    if isinstance(state, dict):
        return ", ".join(f"{k} {tuple(v.shape)}" for k, v in state.items() if isinstance(v, np.ndarray))
    return ""


def layer_table(model, context):
    """Per block: index, letter, mixer kind and role (its `role`, if it has one), mixer and MLP parameters (a weight shared with an earlier
    block counted there only, its later users marked shared), MLP description, decode state shapes at
    batch 1 and `context` tokens."""
    seen, rows = set(), []
    limit = context_limit(model)
    states = model.init_state(1, context) if limit is None or context <= limit else [None] * len(model.blocks)

    def count(module):
        own = shared = 0
        for p in module.params():
            if id(p) in seen:
                shared += p.data.size
            else:
                seen.add(id(p))
                own += p.data.size
        return own, shared

    for i, (block, letter, state) in enumerate(zip(model.blocks, model.config["pattern"], states)):
        mixer_own, mixer_shared = count(block.mixer)
        mlp = block.mlp
        mlp_own = count(mlp)[0] if mlp is not None else 0
        if mlp is None:
            mlp_text = "none"
        elif mlp.kind == "moe":
            mlp_text = f"MoE {mlp.n_experts}×{mlp.expert_kind} {mlp.hidden}, top-{mlp.top_k}"
        else:
            mlp_text = f"{mlp.kind} {mlp.hidden}"
        role = getattr(block.mixer, "role", "")  # what a mixer whose layers differ by depth says of this one (Hymba)
        rows.append(dict(index=i, letter=letter, kind=block.mixer.mixer_name, role=role, mixer_params=mixer_own,
                         shared_params=mixer_shared, mlp=mlp_text, mlp_params=mlp_own,
                         norms=sum(count(n)[0] for n in (block.norm1, block.norm2) if n),
                         state=_shapes(state) if state is not None else f"past the context limit {limit}"))
    return rows


def format_bytes(n):
    if n is None:
        return "—"
    for unit, size in (("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def format_models(rows):
    head = f"{'preset':<14} {'pattern':<14} {'params':>10} {'state/token':>12} {'fixed':>11} {'at 4,096':>11} " \
           f"{'at 32,768':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        sizes = (format_bytes(r[k]) for k in ("state_bytes_per_token", "state_bytes_fixed", "state_bytes_4096",
                                              "state_bytes_32768"))
        lines.append(f"{r['name']:<14} {r['pattern']:<14} {r['params']:>10,} " +
                     " ".join(f"{text:>{w}}" for text, w in zip(sizes, (12, 11, 11, 11))))
    lines.append("decode state of one stream (float32); — : past the model's context limit (Hyena's l_max)")
    return "\n".join(lines)


def format_layers(model, rows, context):
    lines = [f"{model.config['pattern']}: {model.num_params():,} parameters, d_model {model.config['d_model']}, "
             f"vocab {model.vocab_size}" + (f", {model.meta_tokens} meta tokens (prefilled in every state)"
                                            if model.meta_tokens else "") +
             f"; decode state at batch 1, context {context:,}"]
    kinds = [" ".join(filter(None, (r["kind"], r["role"]))) for r in rows]
    width = max(12, *map(len, kinds))
    head = f"{'#':>3} {'':1} {'kind':<{width}} {'mixer params':>22} {'MLP':<28} {'MLP params':>10}  state"
    lines += [head, "-" * len(head)]
    for r, kind in zip(rows, kinds):
        mixer = f"{r['mixer_params']:,}" + (f" +{r['shared_params']:,} shared" if r["shared_params"] else "")
        lines.append(f"{r['index']:>3} {r['letter']:1} {kind:<{width}} {mixer:>22} {r['mlp']:<28} "
                     f"{r['mlp_params']:>10,}  {r['state']}")
    return "\n".join(lines)

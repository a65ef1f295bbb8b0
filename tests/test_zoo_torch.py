"""Each whole zoo model (hybridref/models/zoo.py and griffin, small) against an independent PyTorch
rendering assembled from the per-mixer references (tests/torch_ref/models.py char_lm_forward, with
tests/torch_ref/zamba.py for Zamba's shared block, mamba.py's bcdt_rms and moe.py for Jamba, hymba.py and
the meta tokens for Hymba): logits,
the loss and every parameter gradient. The loss is the mean cross entropy plus, for a model with
experts, aux_loss_coef times each MoE layer's balance loss (the MoE backward always adds its
gradient: hybridref/layers/moe.py). Tolerances as tests/test_torch_crosscheck.py: float64 NumPy vs
float64 torch 1e-9 (the same arithmetic in another order), float32 C vs float64 torch 1e-4 (float32
rounding through a few dozen ops)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from helpers import rel_err  # noqa: E402
from test_zoo import ZOO, tiny_zoo  # noqa: E402
from torch_ref import moe as moe_ref  # noqa: E402
from torch_ref.models import char_lm_forward  # noqa: E402

V = 11
SMALL = {"A": dict(n_heads=2), "Z": dict(n_heads=2, ffn_hidden=12), "L": dict(n_heads=2),
         "H": dict(filter_order=8, emb_dim=5, l_max=16), "M": dict(d_state=4),
         "Y": dict(n_heads=2, d_state=4, dt_rank=4, window=3)}  # dt_rank 4: see Mamba.test_variants


def small(name):
    pattern = tiny_zoo(name).config["pattern"]
    return tiny_zoo(name, d_model=16, mixers={c: o for c, o in SMALL.items() if c in pattern}, seed=3)


def hybridref_step(model, be, ids, targets):
    """(logits, loss) of one forward/backward on `be`; gradients left in the params."""
    model.to(be).zero_grad()
    logits = model.forward(ids)
    loss, probs = be.cross_entropy_forward(logits.reshape(-1, V), targets)
    model.backward(be.cross_entropy_backward(probs, targets).reshape(logits.shape))
    return logits, loss + model.aux_loss()


def torch_step(model, ids, targets):
    p = {n: torch.tensor(w.data.astype(np.float64), requires_grad=True) for n, w in model.named_params()}
    aux = []
    logits = char_lm_forward(p, torch.tensor(ids), model.config, aux)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(targets))
    if model.config["moe"] is not None:
        moe = model.config["moe"]
        assert len(aux) == sum(b.mlp is not None and b.mlp.kind == "moe" for b in model.blocks) > 0
        loss = loss + sum(moe["aux_loss_coef"] * moe_ref.balance_loss(r, moe["top_k"]) for r in aux)
    loss.backward()
    return logits.detach().numpy(), loss.item(), {n: t.grad.numpy() for n, t in p.items()}


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_matches_torch(npb, cb, name):
    rng = np.random.default_rng(6)
    ids, targets = rng.integers(0, V, (2, 13)), rng.integers(0, V, 26)
    model = small(name)
    t_logits, t_loss, t_grads = torch_step(model, ids, targets)
    for be, dtype, tol in ((npb, np.float64, 1e-9), (cb, np.float32, 1e-4)):
        model.astype(dtype)
        logits, loss = hybridref_step(model, be, ids, targets)
        assert rel_err(logits, t_logits) < tol, (name, be.name)
        assert abs(loss - t_loss) < tol * abs(t_loss), (name, be.name, loss, t_loss)
        for pname, prm in model.named_params():
            assert rel_err(prm.grad, t_grads[pname]) < tol, (name, be.name, pname)

"""Side inputs (hybridref/layers/side.py) through a model's forward, backward and decoders, with a toy
mixer registered for the test that reads the token embedding (as Zamba's shared block does):
    y = u Wᵀ + embed Eᵀ
It also shows the C decoder refusing, by name, a mixer kind that has no C step."""
import numpy as np
import pytest

from helpers import check_lm_grads, rel_err
from hybridref.layers import registry
from hybridref.layers.linear import Linear
from hybridref.layers.mixer import Mixer
from hybridref.models.char_lm import CharLM

V = 9


@pytest.fixture
def embed_mix(monkeypatch):
    monkeypatch.setattr(registry, "_MIXERS", dict(registry.mixers()))

    @registry.register_mixer("E", "embed_mix")
    class EmbedMix(Mixer):
        def __init__(self, d, rng, out_std=None):
            super().__init__(d)
            self.lin = Linear(d, d, bias=False, rng=rng)
            self.emb = Linear(d, d, bias=False, rng=rng)

        def forward(self, u, state=None, side=None):
            self.check_input(u)
            self.save(side)
            return self.lin.forward(u) + self.emb.forward(side.get("embed"))

        def backward(self, dy):
            (side,) = self.saved()
            side.add_grad("embed", self.emb.backward(dy))
            return self.lin.backward(dy)

        def init_state(self, batch, max_len, dtype=np.float32):
            return {}

        def step(self, u, state, side=None):
            return self.lin.step(u) + self.emb.step(side.get("embed"))

    return lambda seed=0: CharLM(V, d_model=8, pattern="EAE", n_heads=2, mlp_hidden=6, seed=seed)


def test_gradients_flow_to_the_embedding_through_the_side_input(npb, embed_mix):
    model = embed_mix().to(npb).astype(np.float64)
    ids = np.random.default_rng(0).integers(0, V, (2, 6))
    targets = np.random.default_rng(1).integers(0, V, 12)

    check_lm_grads(model, npb, ids, targets, np.random.default_rng(2), per_param=12)


def test_decoding_passes_the_side_input(npb, cb, embed_mix):
    model = embed_mix(3).to(npb)
    ids = np.random.default_rng(3).integers(0, V, (2, 9))
    full = model.prefill(ids, model.init_state(2, 9))
    dec = model.decoder(2, 9)
    steps = [dec.prefill(ids[:, :3])] + [dec.step(ids[:, t]) for t in range(3, 9)]
    assert rel_err(np.stack(steps, 1), full[:, 2:]) < 1e-5  # float32, other summation orders
    with pytest.raises(ValueError, match="block 0 is a 'embed_mix' mixer, which has no C decode step"):
        model.to(cb).decoder(2, 9)


def test_a_side_input_nobody_produced_is_a_clear_error(npb):
    from hybridref.layers.side import SideInputs
    with pytest.raises(ValueError, match=r"side input 'v_first' is not set in this pass; set: \['embed'\]"):
        SideInputs(embed=np.zeros(1)).get("v_first")

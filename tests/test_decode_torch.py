"""Cross-check against the independent PyTorch version of the character LM (tests/torch_ref/models.py,
built from the per-mixer references tests/torch_ref/<name>.py): the parallel forward, and the peer's
own KV-cache / recurrent decoding that the benchmark times."""
import numpy as np
import pytest

from helpers import rel_err
from hybridref.models.char_lm import CharLM

torch = pytest.importorskip("torch")
from torch_ref.models import TorchCharLM  # noqa: E402

CASES = {"hybrid": ("MAM", {}),
         "gqa-window-layernorm": ("AM", dict(n_heads=4, n_kv_heads=2, window=4, norm="layernorm")),
         "no-mlp-no-rope": ("MA", dict(mlp_hidden={"A": 24, "M": 0}, rope_base=None, d_conv=2))}


@pytest.mark.parametrize("name", CASES)
def test_torch_reference_agrees(npb, rng, name):
    pattern, kw = CASES[name]
    cfg = dict(d_model=16, n_heads=2, mlp_hidden={"A": 24, "M": 8}, d_state=4)
    model = CharLM(11, pattern=pattern, **{**cfg, **kw}).to(npb)
    ids = rng.integers(0, 11, (2, 12))
    ours = model.prefill(ids, model.init_state(2, 12))
    peer = TorchCharLM(model.state_dict(), model.config)
    with torch.inference_mode():
        full = peer.forward(torch.from_numpy(ids)).numpy()
        state = peer.init_state(2, 12)
        steps = np.stack([peer.step(torch.from_numpy(ids[:, t]), state).numpy() for t in range(12)], 1)
    # float32, independent formulations (torch SDPA, conv1d, its own scan loop)
    assert rel_err(full, ours) < 1e-5
    assert rel_err(steps, ours) < 1e-5

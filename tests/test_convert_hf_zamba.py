"""transformers' ZambaForCausalLM and Zamba2ForCausalLM are refused by `hybridref convert --from-hf` with the
reason (hybridref/convert/__init__.py NOT_CONVERTED, hybridref/layers/zamba.py's deviations), and the
reason is checked against transformers: its hybrid layer adds the shared block's output to the next
Mamba layer's input only, not to the residual stream as hybridref's "Z" block does."""
import re

import pytest

from hf_check import randomize, refused

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

V, D = 97, 32


def zamba_model():
    config = transformers.ZambaConfig(vocab_size=V, hidden_size=D, intermediate_size=40, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=4, n_mamba_heads=1,
                                      attn_layer_period=2, attn_layer_offset=0, mamba_d_state=4)
    return randomize(transformers.ZambaForCausalLM(config), torch)


def test_shared_block_output_does_not_reach_the_residual_stream():
    """With the Mamba output projection of hybrid layer 2 zeroed, transformers' layer 2 returns its input
    unchanged: the shared block's output t entered only the Mamba input (x + Mamba(RMSNorm(x + t))). In
    hybridref's form (a "Z" block, then the "M" block) it would be x + t."""
    model = zamba_model()
    assert model.config.layers_block_type[2] == "hybrid"
    layer = model.model.layers[2]
    with torch.no_grad():
        layer.mamba_decoder.mamba.out_proj.weight.zero_()
        x = torch.randn(1, 5, D)
        e = torch.randn(1, 5, D)
        t = layer.linear(layer.shared_transf(x, original_hidden_states=e, layer_idx=2, attention_mask=None))
        out = layer(x, original_hidden_states=e, layer_idx=2)
    out = out[0] if isinstance(out, tuple) else out
    assert t.abs().max() > 0.1  # the shared block does produce an output
    assert torch.equal(out, x)


@pytest.mark.parametrize("model_type, reason", [
    ("zamba", r"adds the shared block's output to the next Mamba layer's input only.*n_mamba_heads.*'gelu'"),
    ("zamba2", r"Mamba-2 layers, num_mem_blocks alternating shared blocks with a LoRA per call")])
def test_zamba_is_refused_with_the_reason(tmp_path, model_type, reason):
    folder = tmp_path / "zamba"
    zamba_model().save_pretrained(folder)
    message = refused(folder, tmp_path, lambda c: c.update(model_type=model_type))
    assert re.search(rf"model_type '{model_type}' is not converted: .*{reason}", message), message

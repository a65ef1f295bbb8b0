"""A MambaForCausalLM with the exact config of state-spaces/mamba-130m-hf and random weights, saved with
transformers' save_pretrained: what `hybridref convert --from-hf` reads from a real checkpoint, built
offline (no weights are downloaded). Needs torch and transformers (the dev extra).

    python examples/random_mamba_130m.py runs/mamba-130m-random
    hybridref convert --from-hf runs/mamba-130m-random --out runs/mamba-130m.safetensors
    hybridref generate --checkpoint runs/mamba-130m.safetensors --prompt-ids 1,2,3,4,5,6,7,8 --temperature 0
"""
import sys

import torch
import transformers

# state-spaces/mamba-130m-hf's config.json: d_model 768, 24 layers, vocabulary 50,280, d_state 16
CONFIG = dict(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16, conv_kernel=4, expand=2,
              time_step_rank=48, layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/random_mamba_130m.py FOLDER")
    torch.manual_seed(0)
    transformers.MambaForCausalLM(transformers.MambaConfig(**CONFIG)).save_pretrained(sys.argv[1])
    print(f"wrote {sys.argv[1]}")

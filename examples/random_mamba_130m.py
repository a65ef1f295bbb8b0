"""A MambaForCausalLM with the exact config of state-spaces/mamba-130m-hf and random weights, saved with
transformers' save_pretrained: what `hybridref convert --from-hf` reads from a real checkpoint, built
offline (no weights are downloaded). Needs torch and transformers (the dev extra).

    python examples/random_mamba_130m.py runs/mamba-130m-random
    hybridref convert --from-hf runs/mamba-130m-random --out runs/mamba-130m.safetensors
    hybridref generate --checkpoint runs/mamba-130m.safetensors --prompt-ids 1,2,3,4,5,6,7,8 --temperature 0
    python examples/random_mamba_130m.py runs/mamba-130m-random --compare runs/mamba-130m.safetensors

--compare CHECKPOINT: the 32 greedy tokens after the prompt 1..8 from transformers' generate on FOLDER and
from hybridref's C decoder on the converted CHECKPOINT, and whether they are the same.
"""
import sys

import torch
import transformers

# state-spaces/mamba-130m-hf's config.json: d_model 768, 24 layers, vocabulary 50,280, d_state 16
CONFIG = dict(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16, conv_kernel=4, expand=2,
              time_step_rank=48, layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)



def compare(folder, checkpoint, count=32):
    import numpy as np

    from hybridref.backends import get_backend
    from hybridref.generate import load_model, stream_ids
    prompt = np.arange(1, 9, dtype=np.int64)
    model = transformers.MambaForCausalLM.from_pretrained(folder).eval()
    model.generation_config.eos_token_id = None  # the whole count, as hybridref generates
    with torch.no_grad():
        theirs = model.generate(torch.from_numpy(prompt[None]), do_sample=False, max_new_tokens=count)[0, 8:].tolist()
    ours = list(stream_ids(load_model(checkpoint, get_backend("c"), need_vocab=False)[0], prompt, count, temperature=0))
    print(f"transformers: {theirs}\nhybridref:    {ours}\nthe same {count} greedy tokens: {theirs == ours}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--compare":
        compare(sys.argv[1], sys.argv[3])
    elif len(sys.argv) == 2:
        torch.manual_seed(0)
        transformers.MambaForCausalLM(transformers.MambaConfig(**CONFIG)).save_pretrained(sys.argv[1])
        print(f"wrote {sys.argv[1]}")
    else:
        sys.exit("usage: python examples/random_mamba_130m.py FOLDER [--compare CHECKPOINT]")

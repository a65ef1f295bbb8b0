"""Decoding a ~130 M-parameter model, one stream, against the machine's memory bandwidth and the peers:

    python benchmarks/bench_decode_large.py [--threads 1 2] [--rounds 5] [--tokens 32] [--peers transformers llamacpp]

Models, random weights (speed does not depend on them), built directly from hybridref's CharLM config:
  mamba-130m   the shape of state-spaces/mamba-130m: d_model 768, 24 Mamba blocks (d_state 16, expand 2,
               d_conv 4, dt_rank 48), no MLP, vocabulary 50,280, RMSNorm, an untied head
  llama-110m   a Llama-style attention model of similar size: d_model 768, 12 attention blocks (12 heads,
               RoPE), SwiGLU MLPs of 2,048 without biases, vocabulary 32,000, RMSNorm

hybridref runs its decoder with float32 weights and with weights="bf16" (the Linear matrices and the
embedding in bfloat16, widened to float32 in the GEMV; norms, biases, conv taps, A, D float32).

Each figure: a prompt of 8 tokens prefilled, then --tokens greedy tokens timed (hybridref: one
Decoder.generate call, the C token loop). GB/s = the bytes a token reads (every weight once, except the
embedding, of which one row; plus the KV cache rows of the attention layers at the mean position) ×
tokens/s; for bf16 runs the 2-D matrices count 2 bytes an element (llama.cpp's bf16 GGUF below holds
the same tensors in bf16 as hybridref's bf16 decoder: embedding, head, in/x/dt/out projections). The bandwidth bound: a read-only streaming pass (numpy.max over a 1 GiB float32 buffer, split
over the threads; far larger than the 32 MiB L3), the best of three passes in the same round.

Peers, on the mamba-130m shape (same weights, converted in memory):
  transformers   MambaForCausalLM(config) .generate with its cache (torch CPU, torch.set_num_threads);
                 its per-token time is (time of 1 + tokens new tokens − time of 1) / tokens
  llamacpp       llama.cpp through llama-cpp-python, the model written as GGUF f32 and bf16 (the gguf
                 package's writer, tensor names of llama.cpp's Mamba; bf16: the 2-D weights but the conv
                 taps and A), one llama_eval call per token (n_ctx 64, no sampling)

Cases are interleaved within each round (the machine is shared); the median over rounds is reported
with the load average.
"""
import argparse
import os
import tempfile
import threading
import time

import numpy as np

from hybridref.backends import get_backend
from hybridref.models.char_lm import CharLM

PROMPT = np.arange(1, 9, dtype=np.int64)
MAMBA = dict(vocab_size=50280, d_model=768, pattern="M" * 24, mlp_hidden=0,
             mixers={"M": dict(d_state=16, expand=2, d_conv=4, dt_rank=48)})
LLAMA = dict(vocab_size=32000, d_model=768, pattern="A" * 12, mlp_hidden=2048, mlp_kind="swiglu", mlp_bias=False,
             mixers={"A": dict(n_heads=12)})


def bytes_per_token(model, tokens, bf16):
    """Bytes one decode step reads: the weights (one embedding row), the matrices of the bf16 decoder at 2
    bytes an element when `bf16`, and the KV cache at the mean position."""
    matrices = {id(w) for w in model.decoder(1, 1, weights="bf16").matrices} if bf16 else set()
    params = sum(p.data.size * (2 if id(p.data) in matrices else 4) for p in model.params())
    params += (model.embed.d - model.embed.weight.data.size) * (2 if bf16 else 4)  # one row of the embedding
    kv = sum(2 * 4 * b.mixer.n_kv_heads * b.mixer.head_dim * (len(PROMPT) + tokens / 2)
             for b in model.blocks if b.mixer.mixer_name == "attention")
    return params + kv


def bandwidth(threads, gib=1):
    """GB/s of a read-only pass over a `gib` GiB float32 buffer split over `threads` threads (numpy.max
    releases the GIL), the best of three."""
    buf = np.ones(gib * 2**28, np.float32)
    parts = np.array_split(buf, threads)
    best = 0.0
    for _ in range(3):
        workers = [threading.Thread(target=p.max) for p in parts]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, buf.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def hybridref_rate(model, tokens, weights):
    dec = model.decoder(1, len(PROMPT) + tokens, weights=weights)
    logits = dec.prefill(PROMPT[None])
    t0 = time.perf_counter()
    dec.generate(logits, tokens, seed=0, temperature=0)
    return tokens / (time.perf_counter() - t0)


def transformers_peer(model):
    """MambaForCausalLM of the same shape and weights; -> rate(threads, tokens)."""
    import torch
    import transformers
    m = model.blocks[0].mixer
    cfg = transformers.MambaConfig(vocab_size=model.vocab_size, hidden_size=model.embed.d,
                                   num_hidden_layers=len(model.blocks), state_size=m.d_state, conv_kernel=4,
                                   expand=m.d_inner // model.embed.d, time_step_rank=m.dt_rank,
                                   layer_norm_epsilon=1e-5, use_bias=False, use_conv_bias=True,
                                   tie_word_embeddings=False)
    peer = transformers.MambaForCausalLM(cfg).eval()
    peer.generation_config.eos_token_id = None
    sd = {"backbone.embeddings.weight": model.embed.weight.data, "backbone.norm_f.weight": model.norm.weight.data,
          "lm_head.weight": model.head.weight.data}
    for i, b in enumerate(model.blocks):
        x, pre = b.mixer, f"backbone.layers.{i}."
        sd.update({pre + "norm.weight": b.norm1.weight.data, pre + "mixer.in_proj.weight": x.in_proj.weight.data,
                   pre + "mixer.conv1d.weight": x.conv_weight.data[:, None, :], pre + "mixer.conv1d.bias": x.conv_bias.data,
                   pre + "mixer.x_proj.weight": x.x_proj.weight.data, pre + "mixer.dt_proj.weight": x.dt_proj.weight.data,
                   pre + "mixer.dt_proj.bias": x.dt_proj.bias.data, pre + "mixer.A_log": x.A_log.data,
                   pre + "mixer.D": x.D.data, pre + "mixer.out_proj.weight": x.out_proj.weight.data})
    peer.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=True)
    ids = torch.from_numpy(PROMPT[None])

    def gen(n):
        with torch.inference_mode():
            t0 = time.perf_counter()
            peer.generate(ids, do_sample=False, max_new_tokens=n, min_new_tokens=n, use_cache=True)
            return time.perf_counter() - t0

    def rate(threads, tokens):
        torch.set_num_threads(threads)
        one = gen(1)
        return tokens / (gen(1 + tokens) - one)
    return rate


def write_gguf(model, path, bf16):
    """The mamba-130m-shaped model as GGUF (llama.cpp's Mamba tensor names; 2-D weights in bf16 when asked)."""
    import gguf
    m = model.blocks[0].mixer
    w = gguf.GGUFWriter(path, "mamba")
    w.add_context_length(1024)
    w.add_embedding_length(model.embed.d)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(len(model.blocks))
    w.add_ssm_conv_kernel(4)
    w.add_ssm_inner_size(m.d_inner)
    w.add_ssm_state_size(m.d_state)
    w.add_ssm_time_step_rank(m.dt_rank)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(model.vocab_size)
    w.add_tokenizer_model("none")

    def put(name, arr):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if bf16 and arr.ndim == 2 and "ssm_conv1d" not in name and "ssm_a" not in name:
            w.add_tensor(name, gguf.quants.quantize(arr, gguf.GGMLQuantizationType.BF16),
                         raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor(name, arr)
    put("token_embd.weight", model.embed.weight.data)
    put("output_norm.weight", model.norm.weight.data)
    put("output.weight", model.head.weight.data)
    for i, b in enumerate(model.blocks):
        x, pre = b.mixer, f"blk.{i}."
        put(pre + "attn_norm.weight", b.norm1.weight.data)
        put(pre + "ssm_in.weight", x.in_proj.weight.data)
        put(pre + "ssm_conv1d.weight", x.conv_weight.data)
        put(pre + "ssm_conv1d.bias", x.conv_bias.data)
        put(pre + "ssm_x.weight", x.x_proj.weight.data)
        put(pre + "ssm_dt.weight", x.dt_proj.weight.data)
        put(pre + "ssm_dt.bias", x.dt_proj.bias.data)
        put(pre + "ssm_a", -np.exp(x.A_log.data))
        put(pre + "ssm_d", x.D.data)
        put(pre + "ssm_out.weight", x.out_proj.weight.data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llamacpp_peer(path):
    """-> rate(threads, tokens) of llama.cpp on the GGUF file at `path`, fed the prompt's tokens again (the
    cost of a step does not depend on the token; no sampling, which over 50,280 logits is ~0.05 ms)."""
    import llama_cpp
    llms = {}

    def rate(threads, tokens):
        if threads not in llms:
            llms[threads] = llama_cpp.Llama(path, n_threads=threads, n_threads_batch=threads, n_ctx=64,
                                            n_batch=len(PROMPT), verbose=False)
        llm = llms[threads]
        llm.reset()
        llm.eval(PROMPT.tolist())
        t0 = time.perf_counter()
        for i in range(tokens):
            llm.eval([int(PROMPT[i % len(PROMPT)])])
        return tokens / (time.perf_counter() - t0)
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--peers", nargs="*", default=["transformers", "llamacpp"])
    args = ap.parse_args()
    be = get_backend("c")
    models = {"mamba-130m": CharLM(**MAMBA).to(be), "llama-110m": CharLM(**LLAMA).to(be)}
    runs, notes = {}, []
    for name, model in models.items():
        for weights in ("f32", "bf16"):
            runs[f"hybridref {weights} {name}"] = (lambda m, w: lambda t, n: (be.set_threads(t),
                                                                            hybridref_rate(m, n, w))[1])(model, weights)
    mamba = models["mamba-130m"]
    tmp = tempfile.mkdtemp(prefix="bench_decode_large_")
    for peer in args.peers:
        try:
            if peer == "transformers":
                runs["transformers f32 mamba-130m"] = transformers_peer(mamba)
            elif peer == "llamacpp":
                for kind in ("f32", "bf16"):
                    path = os.path.join(tmp, f"mamba-130m-{kind}.gguf")
                    write_gguf(mamba, path, kind == "bf16")
                    runs[f"llama.cpp {kind} mamba-130m"] = llamacpp_peer(path)
        except Exception as e:  # noqa: BLE001 (a peer that cannot run is reported, not fatal)
            notes.append(f"{peer}: {type(e).__name__}: {e}")
    results = {(r, t): [] for r in list(runs) + ["bandwidth GB/s"] for t in args.threads}
    for _ in range(args.rounds):
        for t in args.threads:
            results[("bandwidth GB/s", t)].append(bandwidth(t))
            for name, run in runs.items():
                results[(name, t)].append(run(t, args.tokens))
    load = os.getloadavg()
    print(f"median of {args.rounds} rounds, {args.tokens} tokens after a prompt of {len(PROMPT)}; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, 2 cores)")
    for n in notes:
        print("not measured:", n)
    bw = {t: np.median(results[("bandwidth GB/s", t)]) for t in args.threads}
    print("| run | " + " | ".join(f"{t} thread{'s' * (t > 1)}: tokens/s (GB/s, % of bound)" for t in args.threads) + " |")
    print("| --- |" + " ---: |" * len(args.threads))
    print("| read bandwidth bound | " + " | ".join(f"{bw[t]:.1f} GB/s" for t in args.threads) + " |")
    for name in runs:
        model = models["llama-110m" if "llama-110m" in name else "mamba-130m"]
        per = bytes_per_token(model, args.tokens, "bf16" in name)
        cells = []
        for t in args.threads:
            r = np.median(results[(name, t)])
            cells.append(f"{r:.1f} ({r * per / 1e9:.1f}, {100 * r * per / 1e9 / bw[t]:.0f} %)")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

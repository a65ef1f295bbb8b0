"""The PyTorch peer of `hybridref train shakespeare`: a nanoGPT-style character transformer of the
same size (6 layers, d_model 128, 4 heads, MLP 4·d, LayerNorm, learned positions, tied head,
no dropout: nanoGPT's model.py), trained on the same split with the same batches, schedule and
evaluation, for a step count or a wall-clock budget, in torch (CPU).

    python benchmarks/torch_char_peer.py --time-budget 10m --json     # the 10-minute comparison
    python benchmarks/torch_char_peer.py --steps 50                    # smoke run

Data: hybridref's Tiny Shakespeare split (90/10, char vocabulary), batches from the same seeded
generator (hybridref.train_shakespeare.get_batch), validation on the same fixed windows. Optimizer:
AdamW (β 0.9, 0.99, weight decay 0.1 on matrices), clipping at 1, warmup then cosine to lr/10 over
the steps or the time budget, exactly as hybridref's trainer. Threads: --threads (default: torch's).
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hybridref.data.shakespeare import load_shakespeare
from hybridref.train_shakespeare import get_batch


class Block(nn.Module):
    def __init__(self, d, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d, bias=False), nn.LayerNorm(d, bias=False)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc, self.fc_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self, vocab_size, block_size=256, n_layer=6, n_head=4, n_embd=128):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab_size, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied, as nanoGPT
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith(("proj.weight", "fc_proj.weight")):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def evaluate(model, ids, batch_size, block_size, batches, seed=1234):
    """hybridref.train_shakespeare.evaluate's windows and mean."""
    rng = np.random.default_rng(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(batches):
            x, y = get_batch(ids, batch_size, block_size, rng)
            logits = model(torch.from_numpy(x))
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1)).item()
    return total / batches


def parse_duration(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--time-budget", type=parse_duration, default=None, help="600, 600s, 10m")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-batches", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (nanoGPT's default)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    vocab, train_ids, val_ids = load_shakespeare(a.data_dir)
    model = NanoGPT(len(vocab), a.block_size)
    n_params = sum(p.numel() for p in model.parameters())
    step_fn = torch.compile(model) if a.compile else model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(a.seed + 1)
    step, train_time, history, loss_sum, loss_n = 0, 0.0, [], 0.0, 0

    def lr_now():
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        progress = train_time / a.time_budget if a.time_budget else (step - a.warmup) / max(1, a.steps - a.warmup)
        return a.lr / 10 + 0.45 * a.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def record():
        model.eval()
        val = evaluate(model, val_ids, a.batch_size, a.block_size, a.eval_batches)
        model.train()
        history.append(dict(step=step, train_loss=loss_sum / max(loss_n, 1), val_loss=val, train_time_s=train_time))
        print(f"step {step:5d}  train loss {history[-1]['train_loss']:.4f}  val loss {val:.4f}  "
              f"train time {train_time:.1f}s", flush=True)

    while step < a.steps and not (a.time_budget and train_time >= a.time_budget):
        t0 = time.perf_counter()
        x, y = get_batch(train_ids, a.batch_size, a.block_size, rng)
        logits = step_fn(torch.from_numpy(x))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr_now()
        opt.step()
        step += 1
        train_time += time.perf_counter() - t0
        loss_sum, loss_n = loss_sum + loss.item(), loss_n + 1
        if step % a.eval_every == 0:
            record()
            loss_sum, loss_n = 0.0, 0
    if not history or history[-1]["step"] != step:
        record()
    final = history[-1]
    summary = dict(peer=f"torch {torch.__version__} nanoGPT-style", params=n_params, steps=step,
                   train_time_s=train_time, tokens_per_s=step * a.batch_size * a.block_size / max(train_time, 1e-9),
                   final_train_loss=final["train_loss"], final_val_loss=final["val_loss"],
                   val_perplexity=math.exp(final["val_loss"]), threads=torch.get_num_threads(), history=history,
                   config=vars(a))
    print(f"final val loss {final['val_loss']:.4f} after {step} steps, {train_time:.1f}s of training, "
          f"{summary['tokens_per_s']:.0f} tokens/s ({n_params} parameters)")
    if a.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

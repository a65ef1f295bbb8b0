"""Sampling text from a checkpointed character LM with the streaming decoder.

The prompt goes through the parallel forward once (prefill); each new character is then one
decoder step. Sampling: logits / temperature (0: greedy), then top-k (keep the k most likely),
then top-p (keep the smallest set of most likely characters whose probability reaches p), then one
draw from a NumPy generator seeded with `seed`: the same seed gives the same text.
"""
import numpy as np

from .checkpoint import load_checkpoint, restore
from .data.shakespeare import CharVocab
from .models.char_lm import CharLM


def sample(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """One id from logits (V,) (float64 arithmetic)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    z = logits / temperature
    if top_k is not None and top_k < len(z):
        z = np.where(z < np.sort(z)[-top_k], -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = np.cumsum(p[order]) - p[order] < top_p  # the most likely, until the mass reaches top_p
        mask = np.zeros_like(p, dtype=bool)
        mask[order[keep]] = True
        p = np.where(mask, p, 0.0)
        p /= p.sum()
    return int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), len(p) - 1))


def load_model(path, backend):
    """(model on `backend`, vocabulary) from a checkpoint."""
    ckpt = load_checkpoint(path)
    if not ckpt.get("vocab"):
        raise ValueError(f"{path}: the checkpoint has no vocabulary, so it cannot be sampled from")
    model = CharLM.from_config(ckpt["config"])
    restore(ckpt, model)
    return model.to(backend), CharVocab(ckpt["vocab"])


def generate(model, vocab, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0, on_text=None):
    """The prompt followed by max_new_tokens sampled characters; on_text(ch) sees each as it is produced."""
    if not prompt:
        raise ValueError("the prompt must hold at least one character")
    ids = vocab.encode(prompt)
    rng = np.random.default_rng(seed)
    dec = model.decoder(1, len(ids) + max_new_tokens)
    logits = dec.prefill(ids[None, :])[0]
    out = []
    for i in range(max_new_tokens):
        nxt = sample(logits, rng, temperature, top_k, top_p)
        ch = vocab.chars[nxt]
        out.append(ch)
        if on_text:
            on_text(ch)
        if i + 1 < max_new_tokens:
            logits = dec.step(np.array([nxt]))[0]
    return prompt + "".join(out)

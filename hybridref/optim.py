"""AdamW with global-norm gradient clipping, and the warmup + cosine learning-rate schedule."""
import math

import numpy as np


class AdamW:
    """torch.optim.AdamW semantics; weight decay only on params with decay=True (matrices)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, clip_norm=None):
        self.params = list(params)
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.step_count = 0
        self.m = [np.zeros_like(p.data) for p in self.params]
        self.v = [np.zeros_like(p.data) for p in self.params]

    def grad_norm(self, be):
        return math.sqrt(sum(be.sum_squares(p.grad) for p in self.params))

    def step(self, be, lr=None):
        """One update of every param from its .grad; returns the gradient norm before clipping."""
        self.step_count += 1
        norm = self.grad_norm(be)
        if not math.isfinite(norm):
            raise FloatingPointError(f"gradient norm is {norm} at step {self.step_count}: training diverged "
                                     f"(lower the learning rate)")
        scale = min(1.0, self.clip_norm / (norm + 1e-6)) if self.clip_norm else 1.0
        for p, m, v in zip(self.params, self.m, self.v):
            be.adamw_step(p.data, p.grad, m, v, step=self.step_count, lr=self.lr if lr is None else lr,
                          beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                          weight_decay=self.weight_decay if p.decay else 0.0, grad_scale=scale)
        return norm

    def state_dict(self):
        return {"step": self.step_count, "m": self.m, "v": self.v}


def cosine_lr(step, total, peak, warmup, floor=0.0):
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to `floor` at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))

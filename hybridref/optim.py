"""AdamW with global-norm gradient clipping, and the warmup + cosine learning-rate schedule."""
import math

import numpy as np

from .errors import TrainingDiverged


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
            raise TrainingDiverged(f"training diverged at step {self.step_count}: the gradient norm is {norm}; lower "
                                   f"the learning rate (--lr)")
        scale = min(1.0, self.clip_norm / (norm + 1e-6)) if self.clip_norm else 1.0
        for p, m, v in zip(self.params, self.m, self.v):
            be.adamw_step(p.data, p.grad, m, v, step=self.step_count, lr=self.lr if lr is None else lr,
                          beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                          weight_decay=self.weight_decay if p.decay else 0.0, grad_scale=scale)
        return norm


def cosine_lr(step, total, peak, warmup, final_div=math.inf, progress=None):
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to peak / final_div at `total`
    (the default: to 0).

    progress: the fraction of the decay done, in place of (step - warmup) / (total - warmup), e.g.
    the elapsed fraction of a time budget; clipped to 1. The floor is given as a divisor of the
    peak, not as a rate, so that the rates are bit-identical to those of the formulas the training
    scripts used before (peak/10 + 0.45 peak (1 + cos) for final_div=10)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if progress is None:
        progress = (step - warmup) / max(1, total - warmup)
    floor = peak / final_div
    return floor + 0.5 * (1.0 - 1.0 / final_div) * peak * (1.0 + math.cos(math.pi * min(1.0, progress)))


def check_loss(loss, step):
    """The loss of training step `step` (counted from 1); TrainingDiverged when it is not finite, which
    the gradient norm alone can miss (a loss that overflows while the gradients stay finite)."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"training diverged at step {step}: the loss is {loss}; lower the learning rate (--lr)")
    return loss

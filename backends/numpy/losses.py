"""Softmax cross-entropy over classes, averaged over rows."""
import numpy as np

from ..validate import check_positive


def cross_entropy_forward(logits, targets):
    """loss = mean_m (logsumexp(logits[m]) - logits[m, targets[m]]):  logits (M,C), targets int64 (M,)
    -> loss (Python float), probs = softmax(logits) (M,C).

    As the C kernel (csrc/losses.c), each row's loss is log Σ_c e^{x_c − max} − (x_t − max) in float64,
    with the sum split into the row's maxima (terms exactly 1, k of them) and the rest:
    log Σ = log1p(k − 1 + rest) keeps the digits of a confident row's small rest. A -inf logit is a
    class of probability 0; a nan or +inf logit makes its row nan."""
    check_positive("cross_entropy_forward", "number of rows M", logits.shape[0])
    mx = logits.max(axis=1, keepdims=True)
    shifted = logits - mx  # 0 at the row's maxima, < 0 elsewhere (nan where a logit is nan)
    e = np.exp(shifted)
    below = shifted < 0
    rest = np.where(below, e, 0).sum(axis=1, dtype=np.float64)
    ones = np.where(below, 0, e).sum(axis=1, dtype=np.float64)  # k, or nan
    rows = np.arange(len(targets))
    # x_t − max in float64: a float32 difference of two huge logits could overflow
    row_loss = np.log1p(ones - 1 + rest) - (logits[rows, targets].astype(np.float64) - mx[:, 0])
    return float(row_loss.mean()), (e / (ones + rest)[:, None]).astype(logits.dtype)


def cross_entropy_backward(probs, targets):
    """dlogits = (probs - onehot(targets)) / M:  probs (M,C), targets int64 (M,) -> (M,C)."""
    check_positive("cross_entropy_backward", "number of rows M", probs.shape[0])
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1
    return dlogits / len(targets)

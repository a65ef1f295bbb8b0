"""Softmax cross-entropy over classes, averaged over rows."""
import numpy as np


def cross_entropy_forward(logits, targets):
    """loss = mean_m (logsumexp(logits[m]) - logits[m, targets[m]]), via the max-shifted logits.

    logits (M,C), targets int64 (M,) -> loss (Python float), probs = softmax(logits) (M,C)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -logprobs[np.arange(len(targets)), targets].mean()
    return float(loss), np.exp(logprobs)


def cross_entropy_backward(probs, targets):
    """dlogits = (probs - onehot(targets)) / M:  probs (M,C), targets int64 (M,) -> (M,C)."""
    dlogits = probs.copy()
    dlogits[np.arange(len(targets)), targets] -= 1
    return dlogits / len(targets)

"""Matrix multiply and the linear (fully connected) layer."""
from ..validate import check_scalars


def matmul(a, b, trans_a=False, trans_b=False):
    """c = op(a) op(b):  op(a) (M,K), op(b) (K,N) -> c (M,N); op transposes when trans_* is set."""
    check_scalars("matmul", trans_a=trans_a, trans_b=trans_b)
    return (a.T if trans_a else a) @ (b.T if trans_b else b)


def linear_forward(x, w, b):
    """y = x wᵀ + b:  x (M,K), w (N,K), b (N,) or None -> y (M,N)."""
    y = x @ w.T
    return y if b is None else y + b


def linear_backward(dy, x, w, has_bias):
    """dx = dy w (M,K), dw = dyᵀ x (N,K), db = Σ_m dy[m] (N,) or None:  dy (M,N), x (M,K), w (N,K)."""
    check_scalars("linear_backward", has_bias=has_bias)
    return dy @ w, dy.T @ x, dy.sum(axis=0) if has_bias else None

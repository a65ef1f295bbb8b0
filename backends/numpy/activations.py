"""Element-wise activations (any shape) and their derivatives: dx = dy ⊙ f'(x)."""
import math

import numpy as np

GELU_C = math.sqrt(2 / math.pi)  # a Python float, so float32 inputs stay float32
GELU_A = 0.044715
SOFTPLUS_THRESHOLD = 20.0
INV_SQRT_2 = 1 / math.sqrt(2)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def _sigmoid(x):
    """σ(x) = 1/(1 + e⁻ˣ), as exp(-log(1 + e⁻ˣ)) so no exponential overflows."""
    return np.exp(-np.logaddexp(0, -x))


def gelu_forward(x):
    """y = ½ x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³)  (the tanh approximation of GPT-2)."""
    u = GELU_C * (x + GELU_A * x ** 3)
    return 0.5 * x * (1 + np.tanh(u))


def gelu_backward(dy, x):
    """dx = dy (½ (1 + tanh u) + ½ x (1 - tanh² u) √(2/π) (1 + 3·0.044715 x²)).
    1 - tanh² u is exactly 0 for |x| >= 10, so x is clipped there in the second term: nothing changes
    for a finite x, and x = ±inf gets the limits 1 and 0 (as the C kernel), not inf · 0 = nan."""
    t = np.tanh(GELU_C * (x + GELU_A * x ** 3))
    xc = np.clip(x, -10, 10)
    return dy * (0.5 * (1 + t) + 0.5 * xc * (1 - t * t) * GELU_C * (1 + 3 * GELU_A * xc * xc))


def gelu_erf_forward(x):
    """y = x Φ(x), Φ(x) = ½ erfc(−x/√2)  (the exact GELU: torch's GELU, transformers' hidden_act "gelu").
    erfc, not 1 + erf, so that Φ keeps its relative precision in the left tail."""
    return x * _phi(x)


def gelu_erf_backward(dy, x):
    """dx = dy (Φ(x) + x φ(x)),  φ(x) = e^{−x²/2}/√(2π). φ is exactly 0 beyond |x| = 40, so x is clipped
    there in the second term: nothing changes for a finite x, and x = ±inf gets the limits 1 and 0."""
    xc = np.clip(x, -40, 40)
    return dy * (_phi(x) + xc * np.exp(-0.5 * xc * xc) * INV_SQRT_2PI)


def _phi(x):
    """Φ(x) = ½ erfc(−x/√2), the standard normal CDF, in x's dtype (NumPy has no erfc: math.erfc per element)."""
    return np.asarray(0.5 * _erfc(-x * INV_SQRT_2), dtype=np.asarray(x).dtype)  # frompyfunc gives a float at 0-d


_erfc = np.frompyfunc(math.erfc, 1, 1)


def silu_forward(x):
    """y = x σ(x)."""
    return x * _sigmoid(x)


def silu_backward(dy, x):
    """dx = dy σ(x) (1 + x (1 - σ(x)))."""
    s = _sigmoid(x)
    return dy * s * (1 + x * (1 - s))


def silu_gate_forward(x, z):
    """y = x ⊙ z σ(z), x and z of one shape."""
    return x * z * _sigmoid(z)


def silu_gate_backward(dy, x, z):
    """dx = dy z σ(z),  dz = dy x σ(z) (1 + z (1 - σ(z)))."""
    s = _sigmoid(z)
    return dy * z * s, dy * x * s * (1 + z * (1 - s))


def softplus_forward(x):
    """y = log(1 + eˣ), and y = x for x > 20 (torch's threshold)."""
    return np.where(x > SOFTPLUS_THRESHOLD, x, np.log1p(np.exp(np.minimum(x, SOFTPLUS_THRESHOLD))))


def softplus_backward(dy, x):
    """dx = dy σ(x), and dx = dy for x > 20."""
    return dy * np.where(x > SOFTPLUS_THRESHOLD, 1, _sigmoid(x))

"""Position-wise MLP: y = W₂ GELU(W₁ x + b₁) + b₂ (GELU, tanh approximation)."""
from .linear import Linear
from .module import Module


class MLP(Module):
    def __init__(self, d, hidden, rng, out_std=None):
        super().__init__()
        self.fc = Linear(d, hidden, rng=rng)
        self.proj = Linear(hidden, d, rng=rng, std=out_std)

    def forward(self, x):
        h = self.fc.forward(x)
        self.save(h)
        return self.proj.forward(self.be.gelu_forward(h))

    def backward(self, dy):
        (h,) = self.saved()
        return self.fc.backward(self.be.gelu_backward(self.proj.backward(dy), h))

    def step(self, x):
        """Stateless: the forward on one token per stream, x (B, d) -> (B, d)."""
        return self.proj.step(self.be.gelu_forward(self.fc.step(x)))

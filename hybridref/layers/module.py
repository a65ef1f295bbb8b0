"""Module and Param: the model graph is plain Python objects, no autograd engine.

Each layer has `forward(x)`, which keeps what its backward needs, and
`backward(dy)`, which returns the gradient of its input and adds parameter
gradients into `param.grad`. What forward keeps goes on a stack, so a layer
called several times in one pass (Zamba's shared block) pops its calls back in
reverse order. Every op runs through `self.be`, the backend the model was
moved to with `model.to(backend)`; parameters are NumPy arrays on the host,
so the same graph object runs on any backend.
"""
import numpy as np


class Param:
    """A trainable array and its gradient accumulator. `decay`: apply weight decay to it."""

    def __init__(self, data, decay=True):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.grad = np.zeros_like(self.data)
        self.decay = decay

    @property
    def shape(self):
        return self.data.shape


class Module:
    be = None
    takes_seed = False  # True on layers that draw a mask from a per-step seed (Dropout)

    def __init__(self):
        self._saved = []

    # -- what forward keeps for backward ------------------------------------
    def save(self, *tensors):
        self._saved.append(tensors)

    def saved(self):
        if not self._saved:
            raise RuntimeError(f"{type(self).__name__}.backward called without a matching forward")
        return self._saved.pop()

    # -- tree walking ---------------------------------------------------------
    def children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Module):
                        yield f"{name}.{i}", item

    def named_params(self, prefix=""):
        """(dotted name, Param) for every parameter, each shared Param once."""
        seen = set()
        for name, value in vars(self).items():
            if isinstance(value, Param) and id(value) not in seen:
                seen.add(id(value))
                yield prefix + name, value
        for name, child in self.children():
            for sub, p in child.named_params(f"{prefix}{name}."):
                if id(p) not in seen:
                    seen.add(id(p))
                    yield sub, p

    def params(self):
        return [p for _, p in self.named_params()]

    def num_params(self):
        return sum(p.data.size for p in self.params())

    def modules(self):
        yield self
        for _, child in self.children():
            yield from child.modules()

    def to(self, backend):
        """Run every op of this model on `backend` (a Backend or a registered name)."""
        from ..backends import get_backend
        backend = get_backend(backend)
        for m in self.modules():
            m.be = backend
        return self

    def astype(self, dtype):
        """Cast parameters (float64 for finite-difference checks on the NumPy backend)."""
        for p in self.params():
            p.data = p.data.astype(dtype)
            p.grad = np.zeros_like(p.data)
        return self

    def set_dropout_seed(self, key):
        """Dropout on for the next forward/backward, each Dropout layer with its own mask seed
        drawn from `key` (a tuple of ints, e.g. (run seed, step)); None: off (evaluation)."""
        sites = list({id(m): m for m in self.modules() if m.takes_seed and m.p}.values())
        for i, m in enumerate(sites):
            m.seed = None if key is None else int(np.random.SeedSequence([*key, i]).generate_state(1, np.uint64)[0])

    def zero_grad(self):
        for p in self.params():
            p.grad[...] = 0
        self.clear_saved()

    def clear_saved(self):
        """Drop what forward kept (after an evaluation-only forward)."""
        for m in self.modules():
            m._saved.clear()

    def state_dict(self):
        return {name: p.data for name, p in self.named_params()}

    def load_state_dict(self, state):
        params = dict(self.named_params())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(f"state does not match the model: missing {missing}, unexpected {unexpected}")
        for name, p in params.items():
            if tuple(state[name].shape) != p.shape:
                raise ValueError(f"state {name!r} has shape {tuple(state[name].shape)}, the model's is {p.shape}")
            p.data[...] = state[name]

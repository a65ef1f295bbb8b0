"""Independent PyTorch references of hybridref's sequence mixers, one module per mixer, found by the
mixer's registered name (hybridref.layers.registry): tests/torch_ref/<name>.py.

Each mixer module is written from the published formulas, not from hybridref's code, and reads
hybridref's parameters (same names, relative to the mixer: "qkv.weight", "in_proj.weight", ...) as
torch tensors, so one set of weights runs on both. It defines

    forward(p, x, opts)                            x (B,T,D) -> (B,T,D): the parallel forward,
                                                   differentiable with autograd, in x's dtype
    init_state(p, opts, batch, max_len, fill=None) the decode state of `batch` streams (zeros; with
                                                   `fill`, a torch.Generator, random values)
    step(p, x_t, state, opts, pos)                 one token per stream at position `pos`:
                                                   x_t (B,D) -> (B,D), updating `state` in place

where `opts` is the mixer's option dict of a model config (config["mixers"][letter]). The models
built from them (tests/torch_ref/models.py) look a letter's module up by name, so a new mixer adds
one file here and no branch anywhere.
"""
import importlib

REQUIRED = ("forward", "init_state", "step")


def mixer(name):
    """The torch reference module of the mixer registered as `name` (tests/torch_ref/<name>.py)."""
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"torch_ref.mixer: a mixer name must be an identifier, got {name!r}")
    module_name = f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        raise ModuleNotFoundError(f"no PyTorch reference for mixer {name!r}: add tests/torch_ref/{name}.py "
                                  f"with {', '.join(REQUIRED)} (see tests/torch_ref/__init__.py)",
                                  name=module_name) from None
    missing = [f for f in REQUIRED if not callable(getattr(module, f, None))]
    if missing:
        raise AttributeError(f"tests/torch_ref/{name}.py lacks {', '.join(missing)} (see tests/torch_ref/__init__.py)")
    return module

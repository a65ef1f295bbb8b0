"""Backend registry: list, get and register backends by name.

Built-ins are `numpy` (the readable oracle), `c` (hand-written AVX2/AVX-512 +
OpenMP kernels through cffi) and `mpi` (one model over the processes of mpiexec,
wrapping c or numpy; needs mpi4py). Third-party packages add backends through the
entry-point group `hybridref.backends`; each entry point names a zero-argument
factory (or a Backend subclass) that returns a Backend.
"""
import os
from importlib.metadata import entry_points

from .base import OP_NAMES, POSITION_WISE_OPS, SEQUENCE_MIXING_OPS, Backend

ENTRY_POINT_GROUP = "hybridref.backends"

_factories = {}
_instances = {}


def register_backend(name, factory, *, replace=False):
    """Register `factory(**options) -> Backend` under `name`."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    if name in _factories and not replace:
        raise ValueError(f"backend {name!r} is already registered; pass replace=True to override it")
    _factories[name] = factory
    _instances.pop(name, None)


def _load_entry_points():
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _factories:
            _factories[ep.name] = ep.load


def _make_numpy(**options):
    from .numpy import NumpyBackend
    return NumpyBackend(**options)


def _make_c(**options):
    from .c import CBackend
    return CBackend(**options)


def _make_mpi(**options):
    from .mpi import MPIBackend
    return MPIBackend(**options)


register_backend("numpy", _make_numpy)
register_backend("c", _make_c)
register_backend("mpi", _make_mpi)


def list_backends():
    """Names of every registered backend (built-in and entry points)."""
    _load_entry_points()
    return sorted(_factories)


def available_backends():
    """{name: None if it loads, else the reason it does not}."""
    status = {}
    for name in list_backends():
        try:
            get_backend(name)
            status[name] = None
        except Exception as e:  # a backend that cannot load is reported, not fatal
            status[name] = f"{type(e).__name__}: {e}"
    return status


def get_backend(name=None, **options):
    """The backend called `name` (default: $HYBRIDREF_BACKEND, else `c` if compiled, else `numpy`)."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = default_backend_name()
    _load_entry_points()
    if name not in _factories:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(_factories))}")
    key = (name, tuple(sorted(options.items())))
    if key not in _instances:
        factory = _factories[name]
        backend = factory(**options) if options else factory()
        if callable(backend) and not isinstance(backend, Backend):  # entry point gave a factory/class
            backend = backend(**options)
        if not isinstance(backend, Backend):
            raise TypeError(f"backend {name!r} factory returned {type(backend).__name__}, not a Backend")
        missing = backend.missing_ops()
        if missing:
            raise TypeError(f"backend {name!r} lacks ops: {', '.join(missing)}")
        _instances[key] = backend
    return _instances[key]


def default_backend_name():
    env = os.environ.get("HYBRIDREF_BACKEND")
    if env:
        return env
    try:
        from .c import library  # noqa: F401  (compiled?)
        library.load()
        return "c"
    except ImportError:
        return "numpy"


__all__ = [
    "Backend", "OP_NAMES", "POSITION_WISE_OPS", "SEQUENCE_MIXING_OPS",
    "register_backend", "list_backends", "available_backends", "get_backend", "default_backend_name",
]

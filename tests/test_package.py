"""The package layout: setup.py maps the top-level backends/ directory to `hybridref.backends`, so
on disk backends/ has no parent package. A relative import climbing above hybridref.backends
(`from ...layers` in backends/mpi/bench.py) only works through that mapping: modules there import
the rest of hybridref absolutely (`from hybridref.layers... import`)."""
import ast
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = os.path.join(ROOT, "backends")


def _backend_modules():
    """(path relative to the checkout, module name) of every .py file under backends/."""
    found = []
    for folder, dirs, files in os.walk(BACKENDS):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), BACKENDS)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((os.path.relpath(os.path.join(folder, name), ROOT), ".".join(["hybridref.backends", *parts])))
    return found


MODULES = _backend_modules()


def _package(path, module):
    """The package a file's relative imports start from (a package's __init__ is its own package)."""
    return module if path.endswith("__init__.py") else module.rpartition(".")[0]


def _from_imports(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]


def _skip_without_mpi4py(module):
    if module == "hybridref.backends.mpi" or module.startswith("hybridref.backends.mpi."):
        pytest.importorskip("mpi4py", reason="the mpi backend's package imports mpi4py")


def test_every_backend_file_is_found():
    names = {m for _, m in MODULES}
    assert {"hybridref.backends", "hybridref.backends.c.checks", "hybridref.backends.mpi.bench"} <= names


@pytest.mark.parametrize("path,module", MODULES, ids=[p for p, _ in MODULES])
def test_relative_imports_stay_inside_backends(path, module):
    """`from .` (this package) and `from ..` (a sibling backend or backends/ itself) only: a relative
    import never climbs above hybridref.backends."""
    package = _package(path, module)
    depth = package.count(".") - "hybridref.backends".count(".")  # 0 in backends/, 1 in backends/c/, ...
    bad = [f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ..."
           for node in _from_imports(path) if node.level > depth + 1]
    assert not bad, (f"{path} ({module}) climbs above hybridref.backends with a relative import; import "
                     f"the rest of hybridref absolutely (from hybridref.layers... import ...): {bad}")


@pytest.mark.parametrize("path,module", MODULES, ids=[p for p, _ in MODULES])
def test_modules_and_their_imports_resolve(path, module):
    """The module is importable under its package name, and every `from X import` in it names a
    module that exists (relative ones resolved against its package)."""
    _skip_without_mpi4py(module)
    assert importlib.util.find_spec(module) is not None, module
    package = _package(path, module)
    for node in _from_imports(path):
        if node.level:
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
        elif node.module.split(".")[0] == "hybridref":
            target = node.module
        else:
            continue  # numpy, the standard library, ...
        _skip_without_mpi4py(target)
        assert importlib.util.find_spec(target) is not None, f"{path} line {node.lineno}: no module {target}"

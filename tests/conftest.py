"""Shared fixtures: the backends under test, one C backend per ISA build this CPU runs.

The C backend is imported only for the tests that use `cb`: the NumPy-only tests run without the
compiled kernels, and the C ones are then skipped, saying why.
"""
import functools
import os

import numpy as np
import pytest

from hybridref.backends.numpy import NumpyBackend


@functools.lru_cache(maxsize=None)
def c_isas():
    """(the ISA builds this CPU runs, best first; None), or ((), why the C kernels cannot be loaded)."""
    from hybridref.backends.c import library
    try:
        return tuple(library.supported_isas()), None
    except ImportError as e:
        return (), str(e)


def pytest_generate_tests(metafunc):
    """`cb` is parametrized over c_isas(), computed the first time a test asks for it."""
    if "cb" not in metafunc.fixturenames:
        return
    isas, problem = c_isas()
    if isas:
        metafunc.parametrize("cb", isas, ids=[f"isa={i}" for i in isas], indirect=True, scope="session")
    else:
        skip = pytest.mark.skip(reason=f"the C backend is not available: {problem}")
        metafunc.parametrize("cb", [pytest.param(None, marks=skip)], ids=["isa=none"], indirect=True,
                             scope="session")


@pytest.fixture(scope="session")
def npb():
    return NumpyBackend()


@pytest.fixture(scope="session")
def cb(request):
    """The C backend, once per ISA build (scalar path included)."""
    from hybridref.backends.c import CBackend
    return CBackend(isa=request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("HYBRIDREF_TEST_SEED", "0")))


@pytest.fixture
def corpus(tmp_path):
    """A data folder holding a random 4,000-character tinyshakespeare/input.txt of "abcdefgh \n"."""
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (folder / "input.txt").write_text("".join(rng.choice(list("abcdefgh \n"), 4000)))
    return str(tmp_path / "data")

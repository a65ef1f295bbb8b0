"""Shared fixtures: the backends under test, one C backend per ISA build this CPU runs."""
import os

import numpy as np
import pytest

from hybridref.backends.c import CBackend
from hybridref.backends.numpy import NumpyBackend
from hybridref.backends.c import library

ISAS = library.supported_isas()


@pytest.fixture(scope="session")
def npb():
    return NumpyBackend()


@pytest.fixture(scope="session", params=ISAS, ids=[f"isa={i}" for i in ISAS])
def cb(request):
    """The C backend, once per ISA build (scalar path included)."""
    return CBackend(isa=request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(int(os.environ.get("HYBRIDREF_TEST_SEED", "0")))

"""The backend registry and the ISA / thread selection of the C backend."""
import os
import subprocess
import sys

import numpy as np
import pytest

from hybridref import backends
from hybridref.backends import Backend, OP_NAMES, get_backend, list_backends, register_backend
from hybridref.backends.c import library


def test_builtins_are_listed_and_complete():
    assert {"numpy", "c"} <= set(list_backends())
    for name in ("numpy", "c"):
        be = get_backend(name)
        assert be.missing_ops() == [] and be.name == name


def test_ops_are_split_into_position_wise_and_sequence_mixing():
    assert set(backends.POSITION_WISE_OPS).isdisjoint(backends.SEQUENCE_MIXING_OPS)
    assert set(OP_NAMES) == set(backends.POSITION_WISE_OPS) | set(backends.SEQUENCE_MIXING_OPS)
    for op in ("attention_forward", "selective_scan_forward", "causal_conv1d_forward", "mean_pool_forward"):
        assert op in backends.SEQUENCE_MIXING_OPS


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*available: .*numpy"):
        get_backend("cuda")


def test_register_a_third_party_backend():
    class Doubling(Backend):
        name = "numpy-twin"

        def __init__(self):
            np_be = get_backend("numpy")
            for op in OP_NAMES:
                setattr(self, op, getattr(np_be, op))

    register_backend("numpy-twin", Doubling)
    try:
        assert get_backend("numpy-twin").name == "numpy-twin"
        with pytest.raises(ValueError, match="already registered"):
            register_backend("numpy-twin", Doubling)
    finally:
        backends._factories.pop("numpy-twin")
        backends._instances.clear()


def test_incomplete_backend_is_refused():
    class Half(Backend):
        name = "half"

    register_backend("half", Half)
    try:
        with pytest.raises(TypeError, match="lacks ops: matmul"):
            get_backend("half")
    finally:
        backends._factories.pop("half")


def test_default_backend_follows_environment(monkeypatch):
    monkeypatch.setenv("HYBRIDREF_BACKEND", "numpy")
    assert backends.default_backend_name() == "numpy"
    monkeypatch.delenv("HYBRIDREF_BACKEND")
    assert backends.default_backend_name() == "c"


def test_isa_selection():
    assert "scalar" in library.supported_isas()
    assert get_backend("c", isa="scalar").isa == "scalar"
    with pytest.raises(ValueError, match="unknown ISA 'sse9'"):
        get_backend("c", isa="sse9")


def test_isa_forced_by_environment():
    code = "from hybridref.backends import get_backend; print(get_backend('c').isa)"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, HYBRIDREF_ISA="scalar"),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "scalar"


def test_threads_setting():
    be = get_backend("c")
    before = be.threads
    try:
        be.set_threads(1)
        assert be.threads == 1
        with pytest.raises(ValueError, match="threads must be >= 1"):
            be.set_threads(0)
    finally:
        be.set_threads(before)


def test_omp_num_threads_above_the_cores_is_capped_in_the_library():
    """Not only in the CLI: `get_backend("c")` in a script with OMP_NUM_THREADS=100000 segfaulted in its first
    kernel (the OpenMP runtime tried to start that many threads). The backend caps it to the cores and warns."""
    code = ("import numpy as np; from hybridref.backends import get_backend; be = get_backend('c'); "
            "y = be.linear_forward(np.ones((64, 256), np.float32), np.ones((256, 256), np.float32), None); "
            "print(be.threads, float(y[0, 0]))")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, OMP_NUM_THREADS="100000"),
                         capture_output=True, text=True, timeout=120)
    cores = len(os.sched_getaffinity(0))
    assert out.returncode == 0 and out.stdout.split() == [str(cores), "256.0"], out.stderr[-2000:]
    assert f"ThreadCapWarning: OMP_NUM_THREADS=100000 is more than the {cores} cores" in out.stderr


@pytest.mark.parametrize("value", ["abc", "0", "2.5"])
def test_omp_num_threads_that_is_not_a_count_is_refused_by_the_library(value, monkeypatch):
    from hybridref.backends.c import CBackend
    from hybridref.errors import UserError
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    with pytest.raises(UserError, match=f"OMP_NUM_THREADS={value!r} is not a thread count"):
        CBackend()


def test_results_do_not_depend_on_thread_count_for_position_wise_gemm():
    be = get_backend("c")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 67, 67)).astype(np.float32)
    before = be.threads
    try:
        be.set_threads(1)
        one = be.matmul(a, b)
        be.set_threads(2)
        assert np.array_equal(one, be.matmul(a, b))
    finally:
        be.set_threads(before)

"""Multi-direction Mamba scans (hybridref/layers/scan_directions.py, Mamba's `directions`): the
re-orderings against an index-by-index definition, gradients on a non-square grid, C = NumPy,
Vision Mamba's block as two ordinary Mambas, the errors, and the MNIST model with each setting.
(Square grids and the decoding refusals of every configuration: tests/test_mixer_conformance.py;
several processes: tests/mpi_check.py.)"""
import numpy as np
import pytest

from helpers import check_layer_grads, rel_err, run_backends
from hybridref.layers.mamba import Mamba
from hybridref.layers.scan_directions import DIRECTIONS, from_scan, to_scan
from hybridref.models.mnist_hybrid import MnistHybrid

D = 12
GRID = (3, 5)  # not square: a transposition that mixed up height and width would show


def mamba(directions, grid=None, seed=0, d=D):
    return Mamba(d, np.random.default_rng(seed), d_state=4, directions=directions, grid=grid, out_std=0.3)


def reading_order(direction, H, W):
    """The stored position each step of a direction reads, written out index by index."""
    if direction.transpose:
        order = [i * W + j for j in range(W) for i in range(H)]  # column-major: down each column
    else:
        order = list(range(H * W))
    return order[::-1] if direction.reverse else order


@pytest.mark.parametrize("directions", [2, 4])
def test_reorderings_are_the_definition_and_invert_exactly(npb, directions):
    H, W = GRID
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 2, H * W, 3))
    for direction in DIRECTIONS[directions]:
        xs = to_scan(npb, x, direction, GRID)
        np.testing.assert_array_equal(xs, x[:, reading_order(direction, H, W)])
        np.testing.assert_array_equal(from_scan(npb, xs, direction, GRID), x)
        np.testing.assert_array_equal(to_scan(npb, from_scan(npb, x, direction, GRID), direction, GRID), x)
        # from_scan is to_scan's adjoint (the backward of a permutation): <P x, y> = <x, Pᵀ y>
        assert np.isclose(np.sum(xs * y), np.sum(x * from_scan(npb, y, direction, GRID)), rtol=1e-14)


@pytest.mark.parametrize("directions,grid", [(2, None), (4, GRID)])
def test_gradients_float64(npb, directions, grid):
    """Central differences (helpers: eps 1e-6, ~1e-10 relative rounding; tolerance 1e-6) of
    L = Σ out ⊙ G, every input coordinate and random coordinates of every parameter of every direction."""
    rng = np.random.default_rng(1)
    layer = mamba(directions, grid).to(npb).astype(np.float64)
    x, G = rng.standard_normal((2, 2, 15, D))
    grads = check_layer_grads(layer, x, G, rng)
    assert sum(n.startswith("scan_") for n in grads) == 7 * (directions - 1)


@pytest.mark.parametrize("directions,grid", [(2, None), (4, GRID), (4, (5, 3))])
def test_c_matches_numpy(npb, cb, directions, grid):
    """float32 through the same ops as directions=1, K times: the conformance suite's 1e-5 (outputs)
    and 1e-4 (gradients)."""
    rng = np.random.default_rng(2)
    x, dy = rng.standard_normal((2, 3, 15, 20)).astype(np.float32)
    got = run_backends(mamba(directions, grid, d=20), x, dy, (npb, cb))
    (y0, dx0, g0), (y1, dx1, g1) = got["numpy"], got["c"]
    assert rel_err(y1, y0) < 1e-5 and rel_err(dx1, dx0) < 1e-4
    for name in g0:
        assert rel_err(g1[name], g0[name]) < 1e-4, name


def test_bidirectional_is_two_mambas(npb):
    """Vision Mamba's block: out(u) = ½ (M_f(u) + flip(M_b(flip(u)))), M_f and M_b ordinary (causal)
    Mambas sharing in_proj and out_proj, M_f with the forward scan's parameters, M_b with the
    backward's. The gate and out_proj are linear in y, so averaging before them (the layer) equals
    averaging the two gated outputs (Vim). float64: equal to rounding, 1e-12; the input gradient too."""
    rng = np.random.default_rng(3)
    bi = mamba(2).to(npb).astype(np.float64)
    fwd, bwd = (mamba(1, seed=s).to(npb).astype(np.float64) for s in (5, 6))
    state = bi.state_dict()
    fwd.load_state_dict({n: v for n, v in state.items() if not n.startswith("scan_")})
    shared = {n: v for n, v in state.items() if n.startswith(("in_proj.", "out_proj."))}
    bwd.load_state_dict({**shared, **{n[len("scan_reversed."):]: v for n, v in state.items()
                                      if n.startswith("scan_reversed.")}})
    u, dy = rng.standard_normal((2, 2, 9, D))
    flip = lambda a: a[:, ::-1]
    want = 0.5 * (fwd.forward(u) + flip(bwd.forward(flip(u).copy())))
    want_dx = 0.5 * (fwd.backward(dy) + flip(bwd.backward(flip(dy).copy())))
    assert rel_err(bi.forward(u), want) < 1e-12
    assert rel_err(bi.backward(dy), want_dx) < 1e-12


def test_bad_options_and_inputs_are_clear_errors(npb):
    for bad in (3, 0, True, "2", [2]):
        with pytest.raises(ValueError, match=r"mamba: directions must be 1 \(causal\), 2 .* or 4 .* got"):
            mamba(bad)
    with pytest.raises(ValueError, match=r"mamba: the grid option is read only by the cross scan \(directions=4\)"):
        mamba(2, grid=(3, 5))
    for bad in ((3,), (0, 5), (3.0, 5), "3x5"):
        with pytest.raises(ValueError, match=r"mamba: grid must be \(height, width\), two positive ints"):
            mamba(4, grid=bad)
    x = np.zeros((2, 15, D), np.float32)
    with pytest.raises(ValueError, match=r"mamba: the cross scan's grid 4x4 holds 16 tokens, but the sequence "
                                         r"has 15; give grid=\(height, width\)"):
        mamba(4, grid=(4, 4)).to(npb).forward(x)
    with pytest.raises(ValueError, match=r"mamba: the cross scan \(directions=4\) reads the tokens as a patch "
                                         r"grid, but 15 tokens are not a square grid; give its shape as the "
                                         r"option grid=\(height, width\)"):
        mamba(4).to(npb).forward(x)


@pytest.mark.parametrize("directions", [2, 4])
def test_a_non_causal_mamba_refuses_to_decode(npb, directions):
    layer = mamba(directions).to(npb)
    state = mamba(1).init_state(2)
    message = rf"mamba: directions={directions} scans read later tokens .* cannot decode token by token"
    with pytest.raises(ValueError, match=message):
        layer.init_state(2)
    with pytest.raises(ValueError, match=message):
        layer.step(np.zeros((2, D), np.float32), state)
    with pytest.raises(ValueError, match=message):
        layer.forward(np.zeros((2, 9, D), np.float32), state)
    assert not layer.causal and mamba(1).causal


def test_a_one_process_backend_holds_whole_sequences(npb, cb):
    """Its own time reversal, its sequence the whole, a permutation a gather (the MPI backend's
    sequence mode: tests/mpi_check.py)."""
    x = np.arange(24.0).reshape(2, 6, 2)
    for be in (npb, cb):
        assert be.time_reversed() is be and be.sequence_length(6) == 6
        np.testing.assert_array_equal(be.permute_positions(x, [3, 0, 5, 1, 4, 2]), x[:, [3, 0, 5, 1, 4, 2]])


@pytest.mark.parametrize("directions", [1, 2, 4])
def test_mnist_model_with_each_setting(npb, cb, directions):
    """The MNIST hybrid (4×4 patches: a 7×7 grid of 49 tokens) with directions on its Mamba layers:
    logits and every gradient on C against NumPy (float32, 1e-4), and the parameters the directions add."""
    kw = dict(patch=4, d_model=16, pattern="MAM", n_heads=2, seed=1)
    model = MnistHybrid(directions=directions, **kw)
    assert model.config["mixers"]["M"]["directions"] == directions
    extra = model.num_params() - MnistHybrid(**kw).num_params()
    din, N, R = 32, 16, 1  # expand 2, d_state 16, dt_rank ceil(16/16)
    per_scan = din * 4 + din + din * (R + 2 * N) + R * din + din + din * N + din  # conv w, b, x_proj, dt_proj w, b, A, D
    assert extra == 2 * (directions - 1) * per_scan
    images = np.random.default_rng(4).integers(0, 256, (3, 28, 28)).astype(np.uint8)
    dlogits = np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)
    out = run_backends(model, images, dlogits, (npb, cb))
    assert out["c"][0].shape == (3, 10)
    assert rel_err(out["c"][0], out["numpy"][0]) < 1e-4
    for name, g in out["numpy"][2].items():
        assert rel_err(out["c"][2][name], g) < 1e-4, name


def test_cross_scan_matches_torch(npb, cb):
    """VMamba's CrossScan/CrossMerge written in PyTorch with views, transposes and flips
    (tests/torch_ref/mamba.py) on the non-square grid, outputs and every gradient: float64 NumPy
    1e-9, float32 C 1e-4 (the tolerances of tests/test_torch_crosscheck.py, which checks directions=2)."""
    torch = pytest.importorskip("torch")
    from torch_ref import mamba as ref
    layer = mamba(4, GRID)
    options = dict(d_state=4, directions=4, grid=GRID)
    x, dy = np.random.default_rng(6).standard_normal((2, 2, 15, D))
    p = {n: torch.tensor(prm.data.astype(np.float64), requires_grad=True) for n, prm in layer.named_params()}
    xt = torch.tensor(x, requires_grad=True)
    yt = ref.forward(p, xt, options)
    yt.backward(torch.tensor(dy))
    want = yt.detach().numpy(), xt.grad.numpy(), {n: t.grad.numpy() for n, t in p.items()}
    for be, dtype, tol in ((npb, np.float64, 1e-9), (cb, np.float32, 1e-4)):
        layer.astype(dtype).to(be).zero_grad()
        y = layer.forward(x.astype(dtype))
        assert rel_err(y, want[0]) < tol and rel_err(layer.backward(dy.astype(dtype)), want[1]) < tol
        for name, prm in layer.named_params():
            assert rel_err(prm.grad, want[2][name]) < tol, (be.name, name)

"""Run under `mpiexec -n P` by tests/test_mpi.py: the mpi backend against the local backend in one
process (every process computes that reference itself), for the sequence-mixing ops and for the
whole MNIST hybrid (outputs, loss, every parameter gradient). An assertion failing on any process
aborts the job (the backend's excepthook), so the exit status is the verdict.

    mpiexec -n 3 python tests/mpi_check.py ops model --local c
    mpiexec -n 4 python tests/mpi_check.py model --local c --mode data
    mpiexec -n 2 python tests/mpi_check.py errors
    mpiexec -n 4 python tests/mpi_check.py ops model --scan exscan
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from helpers import rel_err  # noqa: E402

from hybridref.backends.mpi import MPIBackend  # noqa: E402
from hybridref.models.mnist_hybrid import MnistHybrid  # noqa: E402

TOL = 1e-5  # the bound: float32 partial sums and lse merges sit near 1e-7


def gather_seq(be, a, axis=1):
    """The whole sequence from every process's slice."""
    return np.concatenate(be.comm.allgather(a), axis=axis)


def close(name, got, want, tol=TOL):
    err = rel_err(got, want)
    assert err < tol, f"rank {be_rank}: {name}: relative error {err:.2e} >= {tol:.0e}"


def check_ops(be, rng):
    ref = be.local
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    P = be.size
    # T = 2P + 1: unequal slices, and with W = 4 some are shorter than the W-1 halo when P >= 3
    for T in (2 * P + 1, 5 * P + 2):
        be.shard_tokens(np.zeros((1, T, 1)))
        lo, hi = be.seq_edges[be.rank], be.seq_edges[be.rank + 1]
        part = lambda a: np.ascontiguousarray(a[:, lo:hi])

        # causal conv1d, with and without a prefix before the sequence
        x, w, bias, dy, prefix = f32(2, T, 5), f32(5, 4), f32(5), f32(2, T, 5), f32(2, 3, 5)
        for pre in (None, prefix):
            y_ref = ref.causal_conv1d_forward(x, w, bias, pre)
            g_ref = ref.causal_conv1d_backward(dy, x, w, True, pre)
            xl = part(x)
            close(f"conv T={T} y", gather_seq(be, be.causal_conv1d_forward(xl, w, bias, pre)), y_ref)
            dx, dw, db, dpre = be.causal_conv1d_backward(part(dy), xl, w, True, pre)
            close("conv dx", gather_seq(be, dx), g_ref[0])
            close("conv dw", be.all_sum(dw), g_ref[1])
            close("conv dbias", be.all_sum(db), g_ref[2])
            assert (dpre is None) == (pre is None)
            if pre is not None:
                close("conv dprefix", be.all_sum(dpre), g_ref[3])

        # selective scan: 37 channels are three pipelined groups; with h0 and dh_last, and without
        B, Din, N = 2, 37, 5
        x, dy = f32(B, T, Din), f32(B, T, Din)
        delta = (0.1 * np.abs(f32(B, T, Din)) + 0.05).astype(np.float32)
        A = -np.exp(f32(Din, N) * 0.5).astype(np.float32)
        Bm, Cm, D = f32(B, T, N), f32(B, T, N), f32(Din)
        for h0, dh_last in ((None, None), (f32(B, Din, N), f32(B, Din, N))):
            y_ref, h_ref = ref.selective_scan_forward(x, delta, A, Bm, Cm, D, h0)
            g_ref = ref.selective_scan_backward(dy, x, delta, A, Bm, Cm, D, h0, dh_last)
            args = [part(a) for a in (x, delta)] + [A] + [part(a) for a in (Bm, Cm)] + [D]
            y, h_last = be.selective_scan_forward(*args, h0)
            close(f"scan T={T} y", gather_seq(be, y), y_ref)
            if be.rank == P - 1:
                close("scan h_last", h_last, h_ref)
            # dh_last belongs to the last process's h_last: the others pass none
            g = be.selective_scan_backward(part(dy), *args, h0, dh_last if be.rank == P - 1 else None)
            for name, i in (("dx", 0), ("ddelta", 1), ("dBm", 3), ("dCm", 4)):
                close(f"scan {name}", gather_seq(be, g[i]), g_ref[i])
            close("scan dA", be.all_sum(g[2]), g_ref[2])
            close("scan dD", be.all_sum(g[5]), g_ref[5])
            if h0 is not None:
                close("scan dh0", be.all_sum(g[6]), g_ref[6])

        # attention: full causal and a window shorter than a slice (far blocks are skipped)
        q, k, v, do = f32(2, T, 4, 5), f32(2, T, 2, 5), f32(2, T, 2, 5), f32(2, T, 4, 5)
        for window in (None, 3):
            o_ref, lse_ref = ref.attention_forward(q, k, v, window)
            g_ref = ref.attention_backward(do, q, k, v, o_ref, lse_ref, window)
            ql, kl, vl = part(q), part(k), part(v)
            o, lse = be.attention_forward(ql, kl, vl, window)
            close(f"attention T={T} window={window} o", gather_seq(be, o), o_ref)
            close("attention lse", gather_seq(be, lse, axis=2), lse_ref)
            g = be.attention_backward(part(do), ql, kl, vl, o, lse, window)
            for name, got, want in zip(("dq", "dk", "dv"), g, g_ref):
                close(f"attention {name}", gather_seq(be, got), want)

        # rotary embedding at global positions
        x, dy = f32(2, T, 3, 6), f32(2, T, 3, 6)
        close("rope y", gather_seq(be, be.rope_forward(part(x), 5, 100.0)), ref.rope_forward(x, 5, 100.0))
        close("rope dx", gather_seq(be, be.rope_backward(part(dy), 5, 100.0)), ref.rope_backward(dy, 5, 100.0))

        # dropout: each process draws its part of the one-process mask, bit for bit
        x = f32(2, T, 5)
        y = gather_seq(be, be.dropout(part(x), 0.3, 77, time_offset=4))
        assert np.array_equal(y, ref.dropout(x, 0.3, 77, time_offset=4)), "dropout mask differs"

        # mean-pool: each process gets its rows of the batch
        x, dy = f32(P + 2, T, 3), f32(P + 2, 3)
        y = be.mean_pool_forward(part(x))
        close("mean_pool y", np.concatenate(be.comm.allgather(y)), ref.mean_pool_forward(x))
        dx = be.mean_pool_backward(be.local_batch(dy), T)
        close("mean_pool dx", gather_seq(be, dx), ref.mean_pool_backward(dy, T))


def check_model(be, rng):
    """The MNIST hybrid with a windowed attention block and dropout: logits, loss and every gradient."""
    kw = dict(patch=4, d_model=32, pattern="MAMA", n_heads=4, dropout=0.2, seed=3)
    ref_model, model = MnistHybrid(**kw).to(be.local), MnistHybrid(**kw).to(be)
    for m in (ref_model, model):
        m.blocks[3].mixer.window = 7  # a window shorter than a slice (49 tokens over P)
        m.set_dropout_seed((0, 5))
    images = rng.integers(0, 256, (2 * be.size + 1, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, len(images))

    logits_ref = ref_model.forward(images)
    loss_ref, probs = be.local.cross_entropy_forward(logits_ref, labels)
    ref_model.backward(be.local.cross_entropy_backward(probs, labels))

    logits = model.forward(images)
    y = be.local_batch(labels)
    loss, probs = be.cross_entropy_forward(logits, y)
    model.backward(be.cross_entropy_backward(probs, y))
    be.reduce_gradients(model.params())
    close("logits", logits, be.local_batch(logits_ref))
    close("loss", loss, loss_ref)
    ref_params = dict(ref_model.named_params())
    for name, p in model.named_params():
        close(f"grad {name}", p.grad, ref_params[name].grad)
    # the summed gradients are the same bits everywhere, so replicas stay identical
    for p in model.params():
        assert all(np.array_equal(p.grad, other) for other in be.comm.allgather(p.grad)), "replicas differ"


def check_errors(be, rng):
    """Misuse is a ValueError naming the op, raised on every process before any message."""
    import pytest
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    q = f32(2, 3, 2, 4)
    with pytest.raises(ValueError, match="attention_forward: the mpi backend has no sequence split yet"):
        be.attention_forward(q, q, q)
    be.shard_tokens(np.zeros((1, 3 * be.size, 1)))
    with pytest.raises(ValueError, match=r"attention_forward: got 5 positions, but this process .* holds 3"):
        be.attention_forward(f32(2, 5, 2, 4), f32(2, 5, 2, 4), f32(2, 5, 2, 4))
    with pytest.raises(ValueError, match="attention_forward: the mpi backend splits self-attention"):
        be.attention_forward(q, q, q, None, 2)
    x, A = f32(1, 3, 4), f32(4, 2)
    with pytest.raises(ValueError, match="selective_scan_backward: the mpi backend has no forward of these arrays"):
        be.selective_scan_backward(x, x, x, A, f32(1, 3, 2), f32(1, 3, 2), f32(4))
    with pytest.raises(ValueError, match=f"mean_pool_forward: a batch of 1 rows cannot be shared by {be.size}"):
        be.mean_pool_forward(x)
    with pytest.raises(ValueError, match="attention_decode: the mpi backend splits whole sequences"):
        be.attention_decode(f32(2, 2, 4), f32(2, 2, 5, 4), f32(2, 2, 5, 4), 3)
    with pytest.raises(ValueError, match="cannot be split over"):
        be.shard_tokens(np.zeros((1, be.size - 1, 1)))


def main():
    global be_rank
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="+", choices=["ops", "model", "errors"])
    ap.add_argument("--local", default="c")
    ap.add_argument("--mode", default="sequence")
    ap.add_argument("--scan", default="pipeline")
    args = ap.parse_args()
    be = MPIBackend(local=args.local, mode=args.mode, threads=1 if args.local == "c" else None, scan=args.scan)
    be_rank = be.rank
    rng = np.random.default_rng(0)  # the same data on every process
    for what in args.what:
        dict(ops=check_ops, model=check_model, errors=check_errors)[what](be, rng)
    be.comm.Barrier()
    if be.rank == 0:
        print(f"mpi_check {' '.join(args.what)} local={args.local} mode={args.mode} scan={args.scan} "
              f"P={be.size}: OK", flush=True)


be_rank = 0
if __name__ == "__main__":
    main()

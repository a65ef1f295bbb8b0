"""Run under `mpiexec -n P` by tests/test_zoo.py: every zoo preset (hybridref/models/zoo.py, and griffin)
at a small size, one training step (dropout on) on the mpi backend against the local backend in one
process: logits, loss and every parameter gradient within 1e-5 (the bound of tests/mpi_check.py). The
model-level features take part: Zamba's shared block (one set of weights, its gradient summed over its
calls and then over the processes), Jamba's experts (their statistics summed over processes).

    mpiexec -n 3 python tests/mpi_zoo.py --mode sequence
    mpiexec -n 2 python tests/mpi_zoo.py --mode data
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from helpers import rel_err  # noqa: E402
from test_zoo import ZOO, tiny_zoo  # noqa: E402

from hybridref.backends.mpi import MPIBackend  # noqa: E402

TOL = 1e-5


def check(be, name, rng):
    P = be.size
    for T in (2 * P + 1, 4 * P + 3):  # slices of 2 are shorter than Mamba's conv halo
        kw = dict(d_model=16, dropout=0.1, mixers={"A": dict(n_heads=2), "Z": dict(n_heads=2, ffn_hidden=8),
                                                  "L": dict(n_heads=2), "H": dict(filter_order=8, emb_dim=5)})
        kw["mixers"] = {c: o for c, o in kw["mixers"].items() if c in tiny_zoo(name).config["pattern"]}
        ref_model, model = tiny_zoo(name, **kw).to(be.local), tiny_zoo(name, **kw).to(be)
        for m in (ref_model, model):
            m.set_dropout_seed((0, 7))
        ids = rng.integers(0, 11, (P + 1, T))
        targets = rng.integers(0, 11, (P + 1, T))
        logits_ref = ref_model.forward(ids)
        loss_ref, probs = be.local.cross_entropy_forward(logits_ref.reshape(-1, 11), targets.reshape(-1))
        ref_model.backward(be.local.cross_entropy_backward(probs, targets.reshape(-1)).reshape(logits_ref.shape))

        logits = model.forward(ids)
        y = be.shard_tokens(targets).reshape(-1)
        loss, probs = be.cross_entropy_forward(logits.reshape(-1, 11), y)
        model.backward(be.cross_entropy_backward(probs, y).reshape(logits.shape))
        be.reduce_gradients(model.params())
        whole = np.concatenate(be.comm.allgather(logits), axis=1 if be.mode == "sequence" else 0)
        what = f"rank {be.rank}: {name} T={T}"
        assert rel_err(whole, logits_ref) < TOL, f"{what} logits {rel_err(whole, logits_ref):.2e}"
        assert abs(loss - loss_ref) < TOL * abs(loss_ref), f"{what} loss {loss} vs {loss_ref}"
        ref_params = dict(ref_model.named_params())
        for pname, p in model.named_params():
            err = rel_err(p.grad, ref_params[pname].grad)
            assert err < TOL, f"{what} grad {pname}: {err:.2e}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="sequence")
    args = ap.parse_args()
    be = MPIBackend(local="c", mode=args.mode, threads=1)
    rng = np.random.default_rng(0)  # the same data on every process
    for name in ZOO:
        check(be, name, rng)
    be.comm.Barrier()
    if be.rank == 0:
        print(f"mpi_zoo mode={args.mode} P={be.size} {' '.join(ZOO)}: OK", flush=True)


if __name__ == "__main__":
    main()

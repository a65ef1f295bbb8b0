"""Run under `mpiexec -n P` by tests/test_zoo.py: every zoo preset (hybridref/models/zoo.py, and griffin)
at a small size, one training step (dropout on) on the mpi backend against the local backend in one
process: logits, loss and every parameter gradient within 1e-5 (tests/mpi_check.py's check_training_step). The
model-level features take part: Zamba's shared block (one set of weights, its gradient summed over its
calls and then over the processes), Jamba's experts (their statistics summed over processes), Hymba's meta
tokens (held by rank 0 in sequence mode, which shifts the split) and shared keys and values.

    mpiexec -n 3 python tests/mpi_zoo.py --mode sequence
    mpiexec -n 2 python tests/mpi_zoo.py --mode data
    MPI_ZOO_ONLY=hymba,zamba mpiexec -n 3 python tests/mpi_zoo.py    (only those presets)
"""
import argparse
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import mpi_check  # noqa: E402
from test_zoo import ZOO, tiny_zoo  # noqa: E402

from hybridref.backends.mpi import MPIBackend  # noqa: E402


def check(be, name, rng):
    P = be.size
    for T in (2 * P + 1, 4 * P + 3):  # slices of 2 are shorter than Mamba's conv halo
        # "M" dt_rank 4: the default at d_model 16 is 1, where Jamba's RMSNorm on Δ is x/√(x²+ε) over one
        # element, whose slope 1/√ε near 0 magnifies float32 rounding of x ~300-fold (the gradient of its
        # weight then differed by 1.2e-5 to 5e-5 between summation orders, depending on the draw)
        kw = dict(d_model=16, dropout=0.1, mixers={"A": dict(n_heads=2), "M": dict(dt_rank=4),
                                                  "Z": dict(n_heads=2, ffn_hidden=8),
                                                  "L": dict(n_heads=2), "H": dict(filter_order=8, emb_dim=5),
                                                  "Y": dict(n_heads=2, window=3, dt_rank=4)})
        kw["mixers"] = {c: o for c, o in kw["mixers"].items() if c in tiny_zoo(name).config["pattern"]}
        ref_model, model = tiny_zoo(name, **kw).to(be.local), tiny_zoo(name, **kw).to(be)
        for m in (ref_model, model):
            m.set_dropout_seed((0, 7))
        ids = rng.integers(0, 11, (P + 1, T))  # data mode: a batch row or two per process
        targets = rng.integers(0, 11, (P + 1, T))
        mpi_check.check_training_step(be, ref_model, model, ids, targets, f"{name} T={T}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="sequence")
    args = ap.parse_args()
    be = MPIBackend(local="c", mode=args.mode, threads=1)
    mpi_check.be_rank = be.rank
    names = os.environ["MPI_ZOO_ONLY"].split(",") if os.environ.get("MPI_ZOO_ONLY") else ZOO
    for name in names:
        # the same data on every process, and for a preset whichever others run before it (MPI_ZOO_ONLY)
        check(be, name, np.random.default_rng(zlib.crc32(name.encode())))
    be.comm.Barrier()
    if be.rank == 0:
        print(f"mpi_zoo mode={args.mode} P={be.size} {' '.join(names)}: OK", flush=True)


if __name__ == "__main__":
    main()

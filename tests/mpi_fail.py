"""Run under `mpiexec -n P` by tests/test_mpi.py: one process fails while the others go on into
communication that now can never complete. The job must end (non-zero) with the message.

    mpiexec -n 3 python tests/mpi_fail.py raise       # rank 0 raises between forward and backward
    mpiexec -n 3 python tests/mpi_fail.py bad-input   # the last rank gets images it cannot patch
"""
import sys

import numpy as np

from hybridref.backends.mpi import MPIBackend
from hybridref.models.mnist_hybrid import MnistHybrid

be = MPIBackend(local="c", threads=1)
model = MnistHybrid(patch=7, d_model=16, pattern="MAMA").to(be)
images = np.random.default_rng(0).integers(0, 256, (8, 28, 28)).astype(np.uint8)
labels = np.arange(8) % 10
if sys.argv[1] == "bad-input" and be.rank == be.size - 1:
    images = images[:, :20]
logits = model.forward(images)
if sys.argv[1] == "raise" and be.rank == 0:
    raise RuntimeError("mpi_fail: rank 0 gives up")
y = be.local_batch(labels)
loss, probs = be.cross_entropy_forward(logits, y)
model.backward(be.cross_entropy_backward(probs, y))
be.reduce_gradients(model.params())
print(f"rank {be.rank}: finished, which it must not", flush=True)

"""What a training step of the MNIST hybrid costs with Mamba layers of 1, 2 or 4 scan directions
(hybridref/layers/scan_directions.py): forward, loss and backward of one batch of 64 images in 4×4
patches (49 tokens), default pattern MMMAMMMA, C backend. The three models run interleaved, one step
each per round, so a change in the machine's load hits them alike; min and median per step.

    python benchmarks/bench_mnist_directions.py --rounds 10 --threads 1
"""
import argparse
import time

import numpy as np

from hybridref.backends.c import CBackend
from hybridref.models.mnist_hybrid import MnistHybrid

DIRECTIONS = (1, 2, 4)


def step(be, model, images, labels):
    model.zero_grad()
    loss, probs = be.cross_entropy_forward(model.forward(images), labels)
    model.backward(be.cross_entropy_backward(probs, labels))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    be = CBackend(threads=args.threads)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 28, 28)).astype(np.uint8), rng.integers(0, 10, 64)
    models = {k: MnistHybrid(patch=4, directions=k).to(be) for k in DIRECTIONS}
    times = {k: [] for k in DIRECTIONS}
    for k in DIRECTIONS:  # warm up
        step(be, models[k], images, labels)
    for _ in range(args.rounds):
        for k in DIRECTIONS:
            t0 = time.perf_counter()
            step(be, models[k], images, labels)
            times[k].append(time.perf_counter() - t0)
    base = np.median(times[1])
    print(f"{be.describe()}, {args.rounds} rounds")
    print("| directions | parameters | min ms/step | median ms/step | median / directions=1 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in DIRECTIONS:
        t = np.array(times[k]) * 1e3
        print(f"| {k} | {models[k].num_params():,} | {t.min():.0f} | {np.median(t):.0f} | "
              f"{np.median(times[k]) / base:.2f} |")


if __name__ == "__main__":
    main()

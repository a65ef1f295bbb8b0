#!/usr/bin/env python3
"""Train the tiny MNIST hybrid (6 Mamba + 2 attention layers) — the same click command as
`hybridref train mnist`. Example:

    HYBRIDREF_DATA=../shared/data python examples/train_mnist.py --backend c --epochs 4
    HYBRIDREF_DATA=../shared/data python examples/train_mnist.py --backend c --patch 4 --directions 2
"""
from hybridref.cli import mnist

if __name__ == "__main__":
    mnist()

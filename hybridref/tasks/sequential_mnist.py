"""Sequential and permuted sequential MNIST (Le et al. 2015; the long-range benchmark of S4, Gu et al.
2022): the 28×28 image read one pixel at a time, 784 tokens, the class predicted after the last.

    inputs  = the image's pixels in row-major order (permuted: in one fixed random order), each its
              8-bit intensity as a token of a 256-token vocabulary
    targets = at the last position (scored): the digit 0 … 9, one of the same 256 outputs

Training examples are drawn from the training images (uniformly, without replacement within a
batch); the held-out set is the official 10,000-image test set. The project's data (../shared/data)
holds the first 20,000 of the 60,000 official training images: results are not comparable to S4's
99.6 % / 98.7 %, which train on all 60,000.

Deviations from S4: pixels are token embeddings, not a linear map of the intensity; the class is read
at the last position of a causal model, not pooled over the sequence; the score is the argmax over
all 256 outputs (the loss drives the 246 that are no digit down).
"""
import numpy as np

from ..data.mnist import load_mnist

PIXELS, LEVELS = 784, 256
PERMUTATION_SEED = 92916  # the fixed order of the permuted task, the same in every run


class SequentialMNIST:
    vocab_size, seq_len = LEVELS, PIXELS

    def __init__(self, permuted=False, data_dir=None, train_images=None, test_images=None):
        """train_images / test_images: keep only the first N of each split (quick runs)."""
        (train_x, train_y), (test_x, test_y) = load_mnist(data_dir)
        self.order = np.random.default_rng(PERMUTATION_SEED).permutation(PIXELS) if permuted else np.arange(PIXELS)
        self.train_x, self.train_y = self.tokens(train_x[:train_images]), train_y[:train_images]
        self.test_x, self.test_y = self.tokens(test_x[:test_images]), test_y[:test_images]
        self.name = "permuted-mnist" if permuted else "sequential-mnist"

    def tokens(self, images):
        """(n, 28, 28) uint8 -> (n, 784) int64 pixel tokens, in this task's order."""
        return images.reshape(len(images), PIXELS)[:, self.order].astype(np.int64)

    def examples(self, inputs, labels):
        targets, mask = np.zeros(inputs.shape, np.int64), np.zeros(inputs.shape, bool)
        targets[:, -1], mask[:, -1] = labels, True
        return inputs, targets, mask

    def sample(self, n, rng):
        idx = rng.choice(len(self.train_x), size=min(n, len(self.train_x)), replace=False)
        return self.examples(self.train_x[idx], self.train_y[idx])

    def test_set(self, seed=None):
        """The official test images (every seed scores the same ones)."""
        return self.examples(self.test_x, self.test_y)

"""MNIST: IDX files -> uint8 images (n, 28, 28) and int64 labels (n,)."""
import numpy as np

from .idx import IdxError, read_idx
from .paths import resolve

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
# SHA-256 of the official files (the downloader verifies them; a local --data-dir may hold a subset).
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}


def _load(key, data_dir):
    name, sha = FILES[key]
    return read_idx(resolve("mnist", name, [m + name for m in MIRRORS], sha, data_dir))


def _checked_pair(images, labels, split):
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise IdxError(f"MNIST {split} images must have shape (n, 28, 28), got {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise IdxError(f"MNIST {split}: {len(images)} images but labels of shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise IdxError(f"MNIST {split} labels must be digits 0..9, got range [{labels.min()}, {labels.max()}]")
    return images, labels.astype(np.int64)


def load_mnist(data_dir=None):
    """((train_images, train_labels), (test_images, test_labels)) as uint8 (n,28,28) and int64 (n,)."""
    train = _checked_pair(_load("train_images", data_dir), _load("train_labels", data_dir), "train")
    test = _checked_pair(_load("test_images", data_dir), _load("test_labels", data_dir), "test")
    return train, test

"""Tiny Shakespeare (Karpathy's char-rnn corpus): a character vocabulary and a 90/10 split.

The vocabulary is the sorted set of characters of the whole corpus (65 for the official file); the
first 90% of the characters are the training split, the last 10% the validation split, as in
nanoGPT's shakespeare_char/prepare.py.
"""
import numpy as np

from .paths import resolve

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TRAIN_FRACTION = 0.9


class CharVocab:
    """Characters <-> ids, ids in sorted character order."""

    def __init__(self, chars):
        self.chars = "".join(sorted(set(chars)))
        self._index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        unknown = sorted(set(text) - set(self._index))
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the vocabulary ({len(self)} characters: "
                             f"{self.chars!r})")
        return np.array([self._index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


def load_text(data_dir=None):
    path = resolve("tinyshakespeare", "input.txt", [URL], SHA256, data_dir)
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_shakespeare(data_dir=None):
    """(vocab, train ids, validation ids), ids int64."""
    text = load_text(data_dir)
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    n = int(TRAIN_FRACTION * len(ids))
    return vocab, ids[:n], ids[n:]


SPLITS = ("train", "val")


def load_split(split, data_dir=None, vocab=None, owner="the model"):
    """The ids of one split ("train" or "val") of the corpus, for a model whose vocabulary is `vocab`
    (e.g. a checkpoint's): refused (ValueError) unless it is the corpus's, since the ids would mean
    other characters. `owner` names the model in the message."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    corpus_vocab, train_ids, val_ids = load_shakespeare(data_dir)
    if vocab is not None and vocab.chars != corpus_vocab.chars:
        raise ValueError(f"{owner}'s vocabulary ({len(vocab.chars)} characters) is not the corpus's "
                         f"({len(corpus_vocab.chars)}): it was trained on other text")
    return train_ids if split == "train" else val_ids

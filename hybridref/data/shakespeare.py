"""Tiny Shakespeare (Karpathy's char-rnn corpus): a character vocabulary and a 90/10 split.

The vocabulary is the sorted set of characters of the whole corpus (65 for the official file); the
first 90% of the characters are the training split, the last 10% the validation split, as in
nanoGPT's shakespeare_char/prepare.py.
"""
import numpy as np

from ..errors import UserError
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
            raise UserError(f"characters {unknown!r} are not in the vocabulary ({len(self)} characters: "
                            f"{self.chars!r}): use only these")
        return np.array([self._index[c] for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


def load_text(data_dir=None):
    """(path, text) of input.txt; UserError naming the file if it cannot be read as UTF-8 text."""
    path = resolve("tinyshakespeare", "input.txt", [URL], SHA256, data_dir)
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}): replace it with a UTF-8 text file "
                        f"(Tiny Shakespeare's input.txt is one)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e}): check the file and its permissions") from None


def load_shakespeare(data_dir=None, min_split=1):
    """(vocab, train ids, validation ids), ids int64. Each split must hold at least `min_split`
    characters (a training window and its next character), else UserError naming the file."""
    path, text = load_text(data_dir)
    n = int(TRAIN_FRACTION * len(text))
    if min(n, len(text) - n) < min_split:
        raise UserError(f"{path}: {len(text)} characters split into {n} for training and {len(text) - n} for "
                        f"validation, but each split needs at least {min_split} (a window of --block-size characters "
                        f"and the next ones): use a longer text or a smaller --block-size")
    vocab = CharVocab(text)
    ids = vocab.encode(text)
    return vocab, ids[:n], ids[n:]


SPLITS = ("train", "val")


def load_split(split, data_dir=None, vocab=None, owner="the model", min_split=1):
    """The ids of one split ("train" or "val") of the corpus, for a model whose vocabulary is `vocab`
    (e.g. a checkpoint's): refused (UserError) unless it is the corpus's, since the ids would mean
    other characters. `owner` names the model in the message; min_split as in load_shakespeare."""
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    corpus_vocab, train_ids, val_ids = load_shakespeare(data_dir, min_split)
    if vocab is not None and vocab.chars != corpus_vocab.chars:
        raise UserError(f"{owner}'s vocabulary ({len(vocab.chars)} characters) is not the corpus's "
                        f"({len(corpus_vocab.chars)}): it was trained on other text; evaluate it on that text")
    return train_ids if split == "train" else val_ids

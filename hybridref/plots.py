"""Training curves as a picture: `--plot PATH` of `train mnist` and `train shakespeare`.

matplotlib is optional (the `plots` extra: pip install 'hybridref[plots]'), drawn on the Agg
backend (no display needed). `check_plot` runs before training, so a missing matplotlib or a path
it cannot write is refused before the run spends its time, not after. The picture is drawn from the
run's history (a resumed run's holds the records of the runs before it) and written atomically, as
a checkpoint is.
"""
import io
import os

from .atomic_write import probe_writable, write_atomically
from .errors import UserError


def pyplot(needed_by="--plot", note="or pip install matplotlib"):
    """matplotlib.pyplot on the Agg backend, or a UserError saying what needs it and how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError(f"{needed_by} needs matplotlib: pip install 'hybridref[plots]' ({note})") from None
    return plt


def _format(path):
    return os.path.splitext(path)[1][1:].lower()


def check_plot(path):
    """Refuse (UserError) a --plot that could not be written: matplotlib missing, a file type it does not
    write (from the extension), or a folder this process cannot write."""
    plt = pyplot()
    kinds = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if _format(path) not in kinds:
        raise UserError(f"--plot {path}: give a file name ending in one of .{', .'.join(sorted(kinds))} (the picture's "
                        f"format)")
    try:
        probe_writable(os.path.abspath(path))
    except OSError as e:
        raise UserError(f"--plot {path}: cannot write there ({e.strerror or e}): choose a path in a folder this "
                        f"process may write") from None


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format=_format(path), dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    try:
        write_atomically(os.path.abspath(path), buf.getvalue())
    except OSError as e:
        raise UserError(f"--plot {path}: cannot write it ({e.strerror or e})") from None


def plot_mnist(history, path, title):
    """Loss and accuracy, train and test, after each epoch (history: train_mnist's records)."""
    plt = pyplot()
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = [r["epoch"] for r in history]
    for ax, key, label in ((loss, "loss", "cross-entropy"), (acc, "acc", "accuracy")):
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", label="train (mean over the epoch)")
        ax.plot(epochs, [r[f"test_{key}"] for r in history], "s-", label="test")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    acc.legend()
    fig.suptitle(title)
    _save(fig, path)


def plot_shakespeare(history, path, title):
    """Training and validation loss against the step (history: train_shakespeare's records; the training
    loss is the mean over the steps since the record before)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in history]
    ax.plot(steps, [r["train_loss"] for r in history], "o-", ms=3, label="train (mean since the last point)")
    ax.plot(steps, [r["val_loss"] for r in history], "s-", ms=3, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/char)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    _save(fig, path)

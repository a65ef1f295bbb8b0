"""What the experiments' plots share: matplotlib (the optional `plots` extra, Agg backend, no display
needed), the fitted slope of a line in log-log axes, and saving a figure."""
import numpy as np

from .. import plots as training_plots


def pyplot():
    return training_plots.pyplot("the experiment plots", "the table and results.jsonl are written; "
                                 "`hybridref experiment NAME --report` redraws the plot")


def loglog_slope(xs, ys):
    """The slope of the least-squares line through (log x, log y): the exponent p of y ∝ x^p."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)

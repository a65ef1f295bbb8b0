"""Measured experiments: `hybridref experiment NAME [--quick] [--out DIR] [--resume]`.

An experiment is a module hybridref/experiments/<name>.py (a hyphen of the experiment's name is an
underscore of the module's: attention-ratio is attention_ratio.py), listed in EXPERIMENTS, that
declares a grid of cells and how to measure one:

    TITLE = "one line"
    TIME_CAP_S = dict(quick=60, full=600)  # a cell running longer is stopped and recorded as skipped
    def cells(quick): -> [dict]            # the grid, each cell a JSON-able dict of its settings
    def measure(cell, quick): -> dict      # runs in the cell's own process; JSON-able measurements
    def skip_reason(cell, records): -> str | None   # optional: skip a cell given the records so far
    def table(records): -> str             # the markdown report (report.markdown_table)
    def plot(records, path)                # the PNG (plot.py)

runner.py runs the cells and appends each record to DIR/results.jsonl as soon as it is measured.
"""
EXPERIMENTS = ("scaling", "architectures", "attention-ratio", "placement", "capabilities", "mqar-grid", "long-range")

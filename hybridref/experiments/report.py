"""The markdown report of an experiment: how it was run (command, machine, dates, load), then the
experiment's own tables (its `table(records)`, built with markdown_table)."""
import math

from .runner import cell_key

MIB = 2 ** 20


def markdown_table(headers, rows):
    """A GitHub markdown table; columns after the first are right-aligned (numbers)."""
    lines = ["| " + " | ".join(headers) + " |", "| --- |" + " ---: |" * (len(headers) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value, digits=3):
    """`value` with `digits` significant digits ("—" for a missing one), thousands separated."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(value)))))
    return f"{value:,.{decimals}f}"


def mib(nbytes):
    return "—" if nbytes is None else number(nbytes / MIB)


def run_conditions(name, out, records, grid):
    """The lines saying how the records were measured; grid: the cell_key of each cell of the experiment's grid."""
    first = records[0]
    m = first["machine"]
    dates = sorted(r["date"] for r in records)
    loads = [r["load"] for r in records if r["status"] == "done"] or [r["load"] for r in records]
    run = [r for r in records if cell_key(r["cell"]) in grid]
    skipped = sum(r["status"] == "skipped" for r in run)
    unrun, outside = len(grid) - len(run), len(records) - len(run)
    return [
        f"Command: `hybridref experiment {name}{' --quick' if first['quick'] else ''} --threads {first['threads']} "
        f"--out {out}`",
        "",
        f"Machine: {m['cores']} cores, {m['cpu']}, C kernels built for {m['isa']}; {first['threads']} OpenMP "
        f"thread(s) per cell, each cell a fresh process (a runner runs its cells one after another; runners given "
        f"different --only subsets may run side by side into one folder). Measured {dates[0]} to {dates[-1]}; "
        f"1-minute load average {min(loads):.2f} to {max(loads):.2f} at the end of the cells (the machine is "
        f"shared: timings are noisy).",
        "",
        "Memory: the peak resident set is measured, Linux's VmHWM of the cell's own process (a fresh process per "
        "cell), reset to the current resident set before each phase (/proc/self/clear_refs), so it includes the "
        "interpreter, NumPy, the C library and the model; the bytes of the model's own arrays beside it are "
        "counted.",
        "",
        f"{len(run)} of the grid's {len(grid)} cells: {len(run) - skipped} measured, {skipped} skipped (reasons in the "
        f"tables and results.jsonl)" + (f"; {unrun} not run yet (--resume runs them)" if unrun else "")
        + (f"; also {outside} records of cells no longer in the grid" if outside else "") + ".",
    ]


def markdown(name, exp, out, records, grid):
    """The report's text: how it was run, then the experiment's tables (records in the grid's order)."""
    return "\n".join([f"# {exp.TITLE}", "", *run_conditions(name, out, records, grid), "", exp.table(records), ""])

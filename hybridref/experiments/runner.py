"""The experiment runner: a grid of cells, each measured in its own process, one JSON line per cell.

Each cell runs in a fresh process (multiprocessing, spawn start method), so its peak resident set
(memory.py) is its own and a cell that crashes, runs out of memory or runs past the experiment's
time cap stops only itself: it is recorded as skipped with the reason. Its record is appended to
DIR/results.jsonl (one line, flushed and synced) as soon as it is measured, so a sweep survives an
interruption; --resume skips the cells DIR/results.jsonl already holds. At the end the report is
written from every record: DIR/<name>.md (the table) and DIR/<name>.png (the plot).

A record (RECORD_KEYS): the experiment, quick, the cell, status ("done" or "skipped"), reason (why
skipped, else None), result (the experiment's measurements, {} when skipped), peak_rss_bytes (the
cell process's peak resident set over all its phases, None when it did not report), wall_s (the
cell's process, start to end), date (ISO 8601, UTC), load (1-minute load average at the end),
threads, machine (cores, CPU, ISA of the C kernels).
"""
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import resource
import time
import traceback
from pathlib import Path

from ..errors import UserError
from ..limits import format_bytes
from . import EXPERIMENTS
from .memory import process_peak_rss_bytes

RESULTS = "results.jsonl"
RECORD_KEYS = ("experiment", "quick", "cell", "status", "reason", "result", "peak_rss_bytes", "wall_s", "date",
               "load", "threads", "machine")
MEMORY_CAP = 16 * 2 ** 30  # address space of a cell's process: below this machine's 23 GiB, shared with others


def load_experiment(name):
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"{__package__}.{name.replace('-', '_')}")


def default_out(name, quick):
    return Path("runs") / "experiments" / (f"{name}-quick" if quick else name)


def cell_key(cell):
    return json.dumps(cell, sort_keys=True)


def machine():
    """Cores, CPU model and the ISA build of the C kernels in use."""
    from ..backends.c import library
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return dict(cores=os.cpu_count(), cpu=cpu, isa=library.selected_isa())


def read_results(path, name, quick):
    """The records of `path`, each checked to belong to this experiment and grid size. A last line
    without its newline (the run was killed while writing it) is dropped from the file."""
    if not path.exists():
        return []
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
        path.write_text(text)
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number} is not a JSON line: delete the line or choose another --out") from None
        if not isinstance(record, dict) or set(record) != set(RECORD_KEYS):
            raise UserError(f"{path}:{number} is not a result record (keys {', '.join(RECORD_KEYS)})")
        if record["experiment"] != name or record["quick"] != quick:
            raise UserError(f"{path}:{number} is a result of experiment {record['experiment']!r}"
                            f"{' --quick' if record['quick'] else ''}, not of {name!r}{' --quick' if quick else ''}: "
                            f"choose another --out")
        records.append(record)
    return records


def _append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _cell_process(name, cell, quick, threads, memory_cap, conn):
    """The body of a cell's process: sends ("done", result, peak), ("skipped", reason, peak),
    ("refused", message, None) for an expected error (UserError: data not found, ...) or ("error",
    traceback, None)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))
        from ..backends import get_backend
        get_backend("c").set_threads(threads)
        result = load_experiment(name).measure(cell, quick)
        conn.send(("done", result, process_peak_rss_bytes()))
    except MemoryError:
        conn.send(("skipped", f"out of memory: more than the cap of {format_bytes(memory_cap)} of address space",
                   process_peak_rss_bytes()))
    except UserError as e:
        conn.send(("refused", str(e), None))
    except BaseException:
        conn.send(("error", traceback.format_exc(), None))
    finally:
        conn.close()


def measure_cell(name, cell, quick, threads, time_cap, memory_cap):
    """(status, reason, result, peak_rss_bytes, wall_s) of one cell run in its own process."""
    ctx = multiprocessing.get_context("spawn")  # a fork would inherit the parent's OpenMP threads and memory
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_cell_process, args=(name, cell, quick, threads, memory_cap, send), daemon=True)
    start = time.perf_counter()
    proc.start()
    send.close()
    timed_out = False
    try:
        timed_out = not receive.poll(time_cap)  # poll returns early at the end of the pipe too
        message = None if timed_out else receive.recv()
    except EOFError:  # the process ended without a word: killed (the kernel's OOM killer) or crashed in C
        message = None
    finally:
        receive.close()
    wall = time.perf_counter() - start
    if message is None:
        if timed_out:
            proc.kill()
        proc.join()  # without the kill: a process that closed its end is exiting, with its own exit code
        reason = (f"time cap: stopped after {time_cap:.0f} s" if timed_out
                  else f"its process ended without a result (exit code {proc.exitcode})")
        return "skipped", reason, {}, None, wall
    proc.join()
    status, payload, peak = message
    if status == "refused":
        raise UserError(f"cell {cell_key(cell)} of experiment {name!r}: {payload}")
    if status == "error":
        raise RuntimeError(f"cell {cell_key(cell)} of experiment {name!r} failed:\n{payload}")
    return status, (payload if status == "skipped" else None), (payload if status == "done" else {}), peak, wall


def select_cells(cells, only):
    """The cells matching every (key, values) of `only` (cell[key] printed as str is one of values): a
    subset of a grid to run first, e.g. one seed of some presets; the rest stays for a later --resume."""
    for key, values in only:
        known = {str(cell[key]) for cell in cells if key in cell}
        if not known:
            raise UserError(f"--only {key}=...: the grid's cells have no key {key!r}; they have "
                            f"{sorted({k for cell in cells for k in cell})}")
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"--only {key}=...: no cell has {key} {', '.join(unknown)}; the grid has "
                            f"{', '.join(sorted(known))}")
        cells = [cell for cell in cells if str(cell.get(key)) in values]
    return cells


def run_experiment(name, quick=False, out=None, resume=False, threads=1, echo=print, memory_cap=MEMORY_CAP,
                   only=()):
    """Measure every cell of experiment `name` (those matching `only`: see select_cells) not yet in
    OUT/results.jsonl, then write the report; -> (records, paths of the report files)."""
    exp = load_experiment(name)
    from ..backends import get_backend
    try:
        get_backend("c")
    except (ImportError, ValueError) as e:
        raise UserError(f"the experiments run on the C backend, which does not load here ({e}): build it with "
                        f"`pip install -e .`") from None
    out = Path(out) if out else default_out(name, quick)
    path = out / RESULTS
    if path.exists() and path.stat().st_size and not resume:
        raise UserError(f"{path} already holds results: --resume continues that run, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    records = read_results(path, name, quick)
    finished = {cell_key(r["cell"]) for r in records}
    cells = select_cells(exp.cells(quick), only)
    time_cap = exp.TIME_CAP_S["quick" if quick else "full"]
    host = machine()
    for i, cell in enumerate(cells, 1):
        if cell_key(cell) in finished:
            continue
        reason = exp.skip_reason(cell, records) if hasattr(exp, "skip_reason") else None
        if reason:
            status, result, peak, wall = "skipped", {}, None, 0.0
        else:
            status, reason, result, peak, wall = measure_cell(name, cell, quick, threads, time_cap, memory_cap)
        record = dict(experiment=name, quick=quick, cell=cell, status=status, reason=reason, result=result,
                      peak_rss_bytes=peak, wall_s=wall,
                      date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      load=os.getloadavg()[0], threads=threads, machine=host)
        _append(path, record)
        records.append(record)
        echo(f"[{i}/{len(cells)}] {cell_key(cell)}: " +
             (f"{wall:.1f} s" if status == "done" else f"skipped ({reason})"))
    return records, write_report(name, out, quick)


def report_records(name, out, quick):
    """-> (the experiment module, the records of DIR/results.jsonl in the grid's order (cells no longer in the
    grid last), the grid: the cell_key of each of its cells -> its index). The order is the grid's, not the
    file's: cells run in any order (--only subsets, several runners' folders merged) give the same report."""
    exp, out = load_experiment(name), Path(out)
    records = read_results(out / RESULTS, name, quick)
    if not records:
        raise UserError(f"{out / RESULTS} holds no results of {name!r}: run the experiment first")
    grid = {cell_key(cell): i for i, cell in enumerate(exp.cells(quick))}
    records.sort(key=lambda r: grid.get(cell_key(r["cell"]), len(grid)))
    return exp, records, grid


def write_report(name, out, quick):
    """DIR/<name>.md and DIR/<name>.png from DIR/results.jsonl; -> their paths. The table is written first,
    so a missing matplotlib (a UserError from the plot) leaves it in place."""
    from .report import markdown
    out = Path(out)
    exp, records, grid = report_records(name, out, quick)
    md = out / f"{name}.md"
    md.write_text(markdown(name, exp, out, records, grid))
    png = out / f"{name}.png"
    exp.plot(records, png)
    return [md, png]

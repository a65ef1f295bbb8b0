"""The measured experiments committed under docs/experiments/: each holds its whole grid and its report is
the one its results give.

A grid grows when a mixer is registered or a size is added; nothing reruns the committed measurements
then, and a report edited by hand (or left behind by a changed table) would quote numbers no record
holds. Both were found by eye before (scaling's run missed the three zoo mixers registered after it).
A grid must also be the same in every process: scaling's lists the registered mixers.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybridref.experiments import EXPERIMENTS
from hybridref.experiments.report import markdown
from hybridref.experiments.runner import cell_key, report_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=EXPERIMENTS)
def committed(request, monkeypatch):
    """(name, its folder as the report names it, relative to the repository, the module, records, grid)."""
    monkeypatch.chdir(ROOT)  # the report quotes its --out, committed as docs/experiments/NAME
    out = Path("docs") / "experiments" / request.param
    return (request.param, out, *report_records(request.param, out, quick=False))


def test_every_cell_of_the_grid_is_committed_once(committed):
    name, out, exp, records, grid = committed
    keys = [cell_key(r["cell"]) for r in records]
    recorded = set(keys)
    assert len(keys) == len(recorded), f"{name}: a cell recorded twice"
    missing = [key for key in grid if key not in recorded]
    outside = [key for key in keys if key not in grid]
    assert not missing, f"{name}: {len(missing)} cells of the grid not measured, e.g. {missing[0]} " \
                        f"(hybridref experiment {name} --out {out} --resume)"
    assert not outside, f"{name}: records of cells no longer in the grid, e.g. {outside[0]}"
    assert all(r["status"] == "done" or r["reason"] for r in records), f"{name}: a skipped cell without its reason"


def test_the_committed_report_is_the_one_its_results_give(committed):
    name, out, exp, records, grid = committed
    assert (out / f"{name}.md").read_text() == markdown(name, exp, out, records, grid), \
        f"{out / name}.md differs from its results: hybridref experiment {name} --report --out {out}"


@pytest.mark.parametrize("first", ["hybridref.layers.rglru", "hybridref.layers.zamba"])
def test_a_grid_does_not_depend_on_which_mixer_module_was_imported_first(first):
    """Mixers register as their modules are imported, so registration order differs between processes (a
    test or a script importing rglru first registered it first, and scaling's report came out in another
    order than the committed one)."""
    code = ("import sys, {}; from hybridref.experiments import scaling; "
            "sys.stdout.write(repr(scaling.cells(False)))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    grids = [subprocess.run([sys.executable, "-c", code.format(module)], capture_output=True, text=True, env=env,
                            check=True).stdout for module in ("hybridref", first)]
    assert grids[0] == grids[1]

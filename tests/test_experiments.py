"""The experiment runner (hybridref/experiments): every experiment's --quick grid, the record schema,
resuming an interrupted run, the table, the plot (and the message without matplotlib), the time cap.
No timing is asserted: the experiments measure, the tests check that they do."""
import json
import os
import sys

import pytest
from click.testing import CliRunner

from hybridref.cli import main
from hybridref.errors import UserError
from hybridref.experiments import EXPERIMENTS, scaling
from hybridref.experiments.report import markdown_table, number
from hybridref.experiments.runner import RECORD_KEYS, RESULTS, measure_cell, read_results, run_experiment, write_report

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the experiments read /proc/self")
needs_data = pytest.mark.skipif(not os.environ.get("HYBRIDREF_DATA"), reason="HYBRIDREF_DATA is not set")

SCALING_KEYS = {"params", "param_bytes", "grad_bytes", "decode_state_bytes", "saved_bytes", "baseline_rss_bytes",
                "fwd_bwd_s", "fwd_bwd_cpu_s", "fwd_bwd_calls", "fwd_bwd_peak_rss_bytes", "prefill_s", "prefill_cpu_s",
                "prefill_calls", "prefill_peak_rss_bytes", "decode_step_s", "decode_step_cpu_s",
                "decode_peak_rss_bytes", "decoder"}
ARCHITECTURES_KEYS = {"params", "steps", "train_time_s", "tokens_per_s", "val_loss", "equal_steps",
                      "val_loss_at_equal_steps", "curve", "train_peak_rss_bytes", "param_bytes", "optimizer_bytes",
                      "saved_bytes", "decode"}


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def scaling_run(tmp_path_factory):
    """The quick scaling grid, run once for the tests of this module."""
    out = tmp_path_factory.mktemp("scaling")
    records, paths = run_experiment("scaling", quick=True, out=out, echo=lambda line: None)
    return out, records, paths


def check_schema(record, name, result_keys):
    assert set(record) == set(RECORD_KEYS)
    assert record["experiment"] == name and record["quick"] is True and record["threads"] == 1
    assert record["status"] == "done" and record["reason"] is None
    assert set(record["result"]) == result_keys
    assert record["peak_rss_bytes"] > 0 and record["wall_s"] > 0
    assert set(record["machine"]) == {"cores", "cpu", "isa"}


def test_scaling_quick_grid(scaling_run):
    out, records, paths = scaling_run
    lines = _lines(out / RESULTS)
    assert lines == records
    assert [r["cell"] for r in lines] == scaling.cells(quick=True)
    for r in lines:
        check_schema(r, "scaling", SCALING_KEYS)
        res = r["result"]
        assert all(res[f"{phase}{clock}"] > 0 for phase in ("fwd_bwd", "prefill", "decode_step")
                   for clock in ("_s", "_cpu_s"))
        # the cell's peak covers every phase; a phase's peak covers what it started with
        assert r["peak_rss_bytes"] >= max(res["fwd_bwd_peak_rss_bytes"], res["prefill_peak_rss_bytes"],
                                          res["decode_peak_rss_bytes"])
        assert res["fwd_bwd_peak_rss_bytes"] >= res["baseline_rss_bytes"] > 0
        assert res["saved_bytes"] > 0 and res["param_bytes"] == 4 * res["params"]
    # attention's KV cache grows with T, Mamba's state does not; activations grow with T for both
    by = {(r["cell"]["model"], r["cell"]["T"]): r["result"] for r in lines}
    assert by["attention", 64]["decode_state_bytes"] > by["attention", 32]["decode_state_bytes"]
    assert by["mamba", 64]["decode_state_bytes"] == by["mamba", 32]["decode_state_bytes"]
    assert by["mamba", 64]["saved_bytes"] > by["mamba", 32]["saved_bytes"]
    assert [p.name for p in paths] == ["scaling.md", "scaling.png"]


def test_scaling_report(scaling_run):
    out, _, _ = scaling_run
    text = (out / "scaling.md").read_text()
    assert "Command: `hybridref experiment scaling --quick --threads 1" in text
    assert "## Fitted slopes" in text and "| hybrid preset | 64 |" in text
    assert "| model | forward+backward | prefill | decode step |" in text


def test_plot_is_a_png(scaling_run):
    pytest.importorskip("matplotlib")
    out, _, _ = scaling_run
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(scaling_run, tmp_path, monkeypatch):
    out, _, _ = scaling_run
    (tmp_path / RESULTS).write_text((out / RESULTS).read_text())
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with pytest.raises(UserError, match=r"pip install 'hybridref\[plots\]'"):
        write_report("scaling", tmp_path, quick=True)
    assert (tmp_path / "scaling.md").exists() and not (tmp_path / "scaling.png").exists()


def test_interrupted_run_resumes(scaling_run, tmp_path):
    """A run stopped after two cells, its last line cut while being written, continues with --resume:
    the finished cells are kept, the others measured once."""
    out, _, _ = scaling_run
    seen = []

    def interrupt(line):
        seen.append(line)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("scaling", quick=True, out=tmp_path, echo=interrupt)
    first = _lines(tmp_path / RESULTS)
    assert len(first) == 2
    with open(tmp_path / RESULTS, "a") as f:
        f.write('{"experiment": "scal')  # killed mid-write
    with pytest.raises(UserError, match="--resume"):
        run_experiment("scaling", quick=True, out=tmp_path, echo=lambda line: None)
    resumed = []
    run_experiment("scaling", quick=True, out=tmp_path, resume=True, echo=resumed.append)
    lines = _lines(tmp_path / RESULTS)
    assert lines[:2] == first
    assert [r["cell"] for r in lines] == scaling.cells(quick=True)
    assert len(resumed) == len(lines) - 2
    run_experiment("scaling", quick=True, out=tmp_path, resume=True, echo=resumed.append)  # nothing left
    assert len(resumed) == len(lines) - 2 and _lines(tmp_path / RESULTS) == lines


def test_only_runs_a_subset_then_resume_runs_the_rest(tmp_path):
    """--only model=hyena runs that model's cells alone; --resume without it measures the others once;
    a key or value the grid lacks is refused with the grid's keys or values."""
    run_experiment("scaling", quick=True, out=tmp_path, echo=lambda line: None, only=[("model", {"hyena"})])
    first = _lines(tmp_path / RESULTS)
    assert [r["cell"] for r in first] == [c for c in scaling.cells(quick=True) if c["model"] == "hyena"]
    run_experiment("scaling", quick=True, out=tmp_path, resume=True, echo=lambda line: None)
    cells = [r["cell"] for r in _lines(tmp_path / RESULTS)]
    assert sorted(map(str, cells)) == sorted(map(str, scaling.cells(quick=True))) and cells[:len(first)] == [
        r["cell"] for r in first]
    with pytest.raises(UserError, match="no key 'preset'.*'T', 'kind', 'model'"):
        run_experiment("scaling", quick=True, out=tmp_path, resume=True, only=[("preset", {"hybrid"})])
    with pytest.raises(UserError, match="no cell has model mambo; the grid has attention"):
        run_experiment("scaling", quick=True, out=tmp_path, resume=True, only=[("model", {"mambo"})])
    result = CliRunner().invoke(main, ["experiment", "scaling", "--quick", "--out", str(tmp_path), "--only", "seed"])
    assert result.exit_code == 2 and "is not KEY=V1,V2" in result.output


def test_results_of_another_grid_are_refused(scaling_run, tmp_path):
    out, _, _ = scaling_run
    (tmp_path / RESULTS).write_text((out / RESULTS).read_text())
    with pytest.raises(UserError, match="not of 'architectures'"):
        read_results(tmp_path / RESULTS, "architectures", quick=True)
    with pytest.raises(UserError, match="not of 'scaling'$|not of 'scaling':"):
        read_results(tmp_path / RESULTS, "scaling", quick=False)
    (tmp_path / RESULTS).write_text('{"a": 1}\n')
    with pytest.raises(UserError, match="is not a result record"):
        read_results(tmp_path / RESULTS, "scaling", quick=True)


def test_time_cap_skips_the_cell():
    status, reason, result, peak, wall = measure_cell("scaling", dict(kind="mixer", model="attention", T=32), True,
                                                      threads=1, time_cap=0.01, memory_cap=2 ** 34)
    assert (status, result, peak) == ("skipped", {}, None) and reason.startswith("time cap")


def test_a_cell_that_ends_without_a_word(tmp_path):
    """A cell's process that exits without sending a result is recorded as such, with its exit code, not as
    past the time cap: here a script without a main guard, whose cell process (spawn) runs it again and
    fails while starting."""
    import subprocess
    script = tmp_path / "no_main_guard.py"
    script.write_text("from hybridref.experiments.runner import measure_cell\n"
                      "print(measure_cell('scaling', dict(kind='mixer', model='attention', T=32), True, 1, 600, "
                      "2 ** 34)[:2])\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert "('skipped', 'its process ended without a result (exit code 1)')" in out.stdout


def test_cell_errors(monkeypatch):
    """An expected error in a cell's process is a UserError in the runner, anything else a RuntimeError with
    the cell's traceback."""
    cell = dict(kind="mixer", model="attention", T=32)
    with pytest.raises(RuntimeError, match="unknown architecture 'nope'"):
        measure_cell("scaling", dict(cell, kind="preset", model="nope"), True, 1, time_cap=60, memory_cap=2 ** 34)
    monkeypatch.setenv("HYBRIDREF_MEMORY_LIMIT", "1K")  # the model's config is refused (hybridref.limits)
    with pytest.raises(UserError, match=r"cell .* of experiment 'scaling': .*HYBRIDREF_MEMORY_LIMIT"):
        measure_cell("scaling", cell, True, 1, time_cap=60, memory_cap=2 ** 34)


def test_scaling_skips_after_a_skipped_length():
    def record(T, status, wall=1.0):
        return dict(cell=dict(kind="preset", model="transformer", T=T), status=status, wall_s=wall, quick=False)
    cell = dict(kind="preset", model="transformer", T=4096)
    assert scaling.skip_reason(cell, []) is None
    assert scaling.skip_reason(cell, [record(2048, "skipped")]) == "T=2048 was skipped"
    assert scaling.skip_reason(cell, [record(1024, "done", 10), record(2048, "done", 20)]) is None
    cap = scaling.TIME_CAP_S["full"]  # 4x from 1,024 to 2,048 predicts 4x again: twice the cap
    reason = scaling.skip_reason(cell, [record(1024, "done", cap / 8), record(2048, "done", cap / 2)])
    assert reason == f"predicted {2 * cap} s (from T=1024, 2048) passes the time cap of {cap} s"


@needs_data
def test_architectures_quick_grid(tmp_path):
    records, paths = run_experiment("architectures", quick=True, out=tmp_path, echo=lambda line: None)
    assert _lines(tmp_path / RESULTS) == records and len(records) == 4
    for r in records:
        check_schema(r, "architectures", ARCHITECTURES_KEYS)
        res = r["result"]
        assert res["steps"] >= res["equal_steps"] and res["val_loss_at_equal_steps"] > 0
        assert res["curve"][-1]["step"] == res["steps"] and res["optimizer_bytes"] == 2 * res["param_bytes"]
        first, long = res["decode"]
        assert first["ms_per_token"] > 0 and first["cpu_ms_per_token"] > 0 and first["state_bytes"] > 0
        if r["cell"]["preset"] == "hyena":  # its filters cover l_max = 1,024 positions
            assert "l_max" in long["reason"]
        else:
            assert long["state_bytes"] > first["state_bytes"]
    text = (tmp_path / "architectures.md").read_text()
    assert "| `transformer` | " in text and "n/a (hyena" in text
    assert [p.name for p in paths] == ["architectures.md", "architectures.png"]


def test_markdown_table_and_numbers():
    assert markdown_table(["a", "b"], [("x", "1"), ("y", "2")]) == \
        "| a | b |\n| --- | ---: |\n| x | 1 |\n| y | 2 |"
    assert [number(v) for v in (1234.4, 0.012345, 2.0, None, 0)] == ["1,234", "0.0123", "2.00", "—", "0"]


def test_cli(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["experiment", "nope"])
    assert result.exit_code == 2 and all(name in result.output for name in EXPERIMENTS)
    result = runner.invoke(main, ["experiment", "scaling", "--quick", "--report", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "holds no results of 'scaling'" in result.output


TASK_KEYS = {"steps", "train_time_s", "tokens_per_s", "train_loss", "accuracy", "test_positions", "test_seed", "params",
             "state_bytes"}
SHAKESPEARE_KEYS = {"params", "steps", "train_cpu_s", "cpu_s_per_step", "tokens_per_s", "val_loss",
                    "train_peak_rss_bytes", "param_bytes", "optimizer_bytes", "saved_bytes", "decode_context",
                    "decode_state_bytes"}


def check_task_result(res, names):
    assert set(res["accuracy"]) == set(names) and all(0 <= a <= 1 for a in res["accuracy"].values())
    assert all(n > 0 for n in res["test_positions"].values()) and res["steps"] > 0 and res["state_bytes"] > 0


@needs_data
def test_attention_ratio_quick_grid(tmp_path):
    from hybridref.experiments import attention_ratio
    records, paths = run_experiment("attention-ratio", quick=True, out=tmp_path, echo=lambda line: None)
    assert [r["cell"] for r in records] == attention_ratio.cells(quick=True)
    lm = {}
    for r in records:
        task = r["cell"]["task"]
        check_schema(r, "attention-ratio", (SHAKESPEARE_KEYS if task == "shakespeare" else TASK_KEYS) |
                     {"pattern", "mlp_hidden"})
        assert r["result"]["pattern"].count("A") == r["cell"]["attention_layers"]
        if task == "shakespeare":
            lm[r["cell"]["attention_layers"]] = r["result"]
        else:  # MQAR over 2 and 4 pairs, few-shot over 1 and 2 shots
            check_task_result(r["result"], ["2", "4"] if task == "mqar" else ["1", "2"])
    # a KV cache per attention layer: the decoder's state at the context grows with r
    assert lm[0]["decode_state_bytes"] < lm[3]["decode_state_bytes"] < lm[12]["decode_state_bytes"]
    assert sum(r["cell"]["task"] == "few-shot" for r in records) == 3  # the Mamba line and pure attention
    text = (tmp_path / "attention-ratio.md").read_text()
    assert "| mamba | 3/12 | `MMAMMMAMMMAM` |" in text and "notes' formula %" in text
    assert "| 1-shot % | 2-shot % | few-shot % |" in text
    assert "| recall % | recall of each seed % |" in text and "| 0: " in text  # the seeds, each by its number
    assert [p.name for p in paths] == ["attention-ratio.md", "attention-ratio.png"]
    assert attention_ratio.notes_recall(0.125) == pytest.approx(71.35, abs=0.01)  # the notes' "r = 0.125: 71 %"
    assert attention_ratio.notes_few_shot(0.125) == 62.5 and attention_ratio.notes_few_shot(0.5) == 100


def test_attention_ratio_reports_mqar_cells_alone(tmp_path):
    """A run of MQAR cells only (`--only task=mqar`, the grid's costly part, split over runners) has its
    table before any Shakespeare cell is measured."""
    run_experiment("attention-ratio", quick=True, out=tmp_path, echo=lambda line: None,
                   only=[("task", {"mqar"}), ("attention_layers", {"0", "12"})])
    text = (tmp_path / "attention-ratio.md").read_text()
    assert "decode state ctx N" in text and "| attention only | 12/12 | `AAAAAAAAAAAA` | — |" in text


def test_equal_parameters_per_block():
    """Every recurrent block is sized to an attention block: the stacks' sizes agree to within one MLP
    unit (2·D + 1 parameters) per block."""
    from hybridref.experiments.stacks import MIXER_NAMES, pattern, spread, stack_config
    from hybridref.models.char_lm import CharLM
    d = 64
    attention = CharLM(2, **stack_config("A" * 12, d)).num_params()
    for letter in MIXER_NAMES:
        for n in (0, 3):
            size = CharLM(2, **stack_config(pattern(letter, spread(n, 12), 12), d)).num_params()
            assert abs(size - attention) <= 12 * (2 * d + 1) / 2, (letter, n)


@needs_data
def test_placement_quick_grid(tmp_path):
    records, paths = run_experiment("placement", quick=True, out=tmp_path, echo=lambda line: None)
    assert len(records) == 6
    for r in records:
        assert r["status"] == "done" and r["result"]["pattern"].count("A") == 3
    patterns = {r["cell"]["placement"]: r["result"]["pattern"] for r in records}
    assert patterns == {"first": "AAAMMMMMMMMM", "evenly": "MMAMMMAMMMAM"}
    text = (tmp_path / "placement.md").read_text()
    assert "| first | `AAAMMMMMMMMM` |" in text and [p.name for p in paths] == ["placement.md", "placement.png"]
    row = next(line for line in text.splitlines() if line.startswith("| evenly |")).split(" | ")
    assert row[4].startswith("0: ") and row[6].startswith("0: ")  # each seed's MQAR and induction accuracy


def test_capabilities_quick_grid(tmp_path):
    from hybridref.experiments import capabilities
    records, paths = run_experiment("capabilities", quick=True, out=tmp_path, echo=lambda line: None)
    assert [r["cell"] for r in records] == capabilities.cells(quick=True)
    state = {}
    for r in records:
        check_schema(r, "capabilities", TASK_KEYS)
        task = capabilities.make_task(r["cell"]["task"], r["cell"]["seq_len"], capabilities.SETTINGS["quick"])
        check_task_result(r["result"], [task.name])
        state[r["cell"]["mixer"], r["cell"]["seq_len"]] = r["result"]["state_bytes"]
    # attention's KV cache covers the task's length, Mamba's state does not grow with it
    assert state["A", 32] == 2 * state["A", 16] and state["M", 32] == state["M", 16]
    text = (tmp_path / "capabilities.md").read_text()
    assert "| attention | 16 |" in text and "induction T=32 %" in text
    assert [p.name for p in paths] == ["capabilities.md", "capabilities.png"]
    n = len(records)
    assert f"{n} of the grid's {n} cells: {n} measured, 0 skipped" in text and "not run yet" not in text
    # a partial grid says so: drop one record and the report counts it as not run
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[1:]))
    write_report("capabilities", tmp_path, quick=True)
    assert f"{n - 1} of the grid's {n} cells: {n - 1} measured, 0 skipped" in (tmp_path / "capabilities.md").read_text()
    assert "; 1 not run yet (--resume runs them)." in (tmp_path / "capabilities.md").read_text()


def test_capabilities_solved_needs_every_seed_of_the_grid_and_seeds_are_per_task():
    from hybridref.experiments import capabilities

    def record(seed, accuracy, task="induction"):
        cell = dict(mixer="W", d_model=64, task=task, seq_len=256, seed=seed)
        result = dict(accuracy={task: accuracy}, state_bytes=1024, params=100)
        return dict(cell=cell, status="done", quick=False, result=result)

    # the full grid has seeds 0 and 1: one seed at 100 % is not "solved", both at 90 % or more are
    one = capabilities.table([record(0, 1.0)])
    assert "| 100 |" in one and "✓" not in one.split("\n", 2)[2]
    both = capabilities.table([record(0, 1.0), record(1, 0.9)])
    assert "| 95.0 ±5.0 ✓ |" in both and both.rstrip().endswith("| 0, 0, 2 |")  # seeds per task: only induction
    # seeds: one number where every task has as many
    full = capabilities.table([record(seed, 1.0, task) for seed in (0, 1) for task in capabilities.TASKS])
    assert full.rstrip().endswith("| 2 |"), full
    assert "✓" not in capabilities.table([record(0, 1.0), record(1, 0.89)]).split("\n", 2)[2]


def test_mqar_grid_quick_grid(tmp_path):
    from hybridref.experiments import mqar_grid
    records, paths = run_experiment("mqar-grid", quick=True, out=tmp_path, echo=lambda line: None)
    assert [r["cell"] for r in records] == mqar_grid.cells(quick=True)
    for r in records:
        check_schema(r, "mqar-grid", TASK_KEYS)
        # every number of pairs that fits the length (4·P <= T): 2 and 4 at T = 16, 2, 4 and 8 at 32
        check_task_result(r["result"], ["2", "4"] if r["cell"]["seq_len"] == 16 else ["2", "4", "8"])
    text = (tmp_path / "mqar-grid.md").read_text()
    assert "| T16/P2 % | T16/P4 % | T32/P2 % | T32/P4 % | T32/P8 % |" in text and "| attention | 16 |" in text
    # the report follows the grid's order, not the file's: the records written in reverse give the same report
    before = (tmp_path / "mqar-grid.md").read_text()
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[::-1]))
    write_report("mqar-grid", tmp_path, quick=True)
    assert (tmp_path / "mqar-grid.md").read_text() == before
    assert [p.name for p in paths] == ["mqar-grid.md", "mqar-grid.png"]


@needs_data
def test_long_range_quick_grid(tmp_path):
    records, paths = run_experiment("long-range", quick=True, out=tmp_path, echo=lambda line: None)
    assert len(records) == 4
    for r in records:
        check_schema(r, "long-range", TASK_KEYS | {"pattern", "train_images", "time_budget"})
        name = "permuted-mnist" if r["cell"]["task"] == "permuted" else "sequential-mnist"
        check_task_result(r["result"], [name])
        assert r["result"]["test_positions"] == {name: 16} and r["result"]["train_images"] == 64
    text = (tmp_path / "long-range.md").read_text()
    assert "20,000" not in text and "64 training images" in text  # the count is the run's, not typed in
    assert [p.name for p in paths] == ["long-range.md", "long-range.png"]

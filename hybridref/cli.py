"""The `hybridref` command line: info, train mnist, train shakespeare, generate, convert, evaluate, bench mpi.

Every expected error (hybridref.errors.UserError: a bad option, environment variable or file, a run
that diverged) is one line and exit status 1, its traceback shown only with --debug or
HYBRIDREF_DEBUG=1; a bad option is click's usage error, status 2; anything else is a bug and keeps
its traceback."""
import json
import math
import os
import sys
import warnings

import click

from .backends import available_backends, default_backend_name, get_backend
from .backends.mpiexec import abort_job_if_launched
from .errors import UserError
from .experiments import EXPERIMENTS
from .layers.moe import parse_moe_option
from .limits import OVERSUBSCRIPTION, ThreadCapWarning, environment_threads, usable_cores
from .models.char_lm import PRESETS
from .plots import check_plot, plot_mnist, plot_shakespeare


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite: NaN passes every comparison of a range, and an
    infinite rate, probability or time means nothing here."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class ThreadCount(click.IntRange):
    """--threads: 1 to the number of cores. Refused above, not capped: an explicit request the machine
    cannot honour is a mistake, and a benchmark run on fewer threads than asked would report wrong
    figures."""

    def __init__(self):
        super().__init__(min=1)

    def convert(self, value, param, ctx):
        count, cores = super().convert(value, param, ctx), usable_cores()
        if count > cores:
            self.fail(f"{count} threads is more than the {cores} cores this process may run on (more only slow the "
                      f"kernels down, and thousands exhaust the machine): give at most {cores}", param, ctx)
        return count


class ProcessCounts(click.ParamType):
    """Comma-separated process counts, each from 1 to OVERSUBSCRIPTION x the cores: "1,2,4" -> [1, 2, 4]."""
    name = "counts"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        most = OVERSUBSCRIPTION * usable_cores()
        counts = []
        for part in str(value).split(","):
            if not part.strip().isdigit() or not 1 <= int(part) <= most:
                self.fail(f"{value!r}: give process counts from 1 to {most} ({OVERSUBSCRIPTION} per core of this "
                          f"machine), comma-separated, such as 1,2", param, ctx)
            counts.append(int(part))
        return counts


def backend_option(f):
    f = click.option("--threads", type=ThreadCount(), default=None,
                     help="OpenMP threads for the C kernels, at most the cores (default: $OMP_NUM_THREADS, "
                          "capped to the cores, else all cores).")(f)
    f = click.option("--backend", default=None, metavar="NAME",
                     help="Backend to run on: numpy, c, ... (default: $HYBRIDREF_BACKEND, else c if compiled, "
                          "else numpy).")(f)
    return f


def checkpoint_options(when):
    """--checkpoint, --checkpoint-every, --resume of a training command that writes its checkpoint `when`."""
    def decorate(f):
        f = click.option("--resume", is_flag=True, help="Continue the run saved in --checkpoint (the same settings).")(f)
        f = click.option("--checkpoint-every", type=click.IntRange(min=1), default=None, metavar="STEPS",
                         help="Also write the checkpoint every this many steps.")(f)
        return click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
                            help=f"Write the checkpoint (safetensors; not .npz) here, {when}.")(f)
    return decorate


def plot_option(f):
    return click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="PATH",
                        help="Draw the loss and accuracy curves to PATH (.png, .svg, .pdf; needs matplotlib: "
                             "pip install 'hybridref[plots]').")(f)


def budget_clock_option(f):
    return click.option("--budget-clock", type=click.Choice(["wall", "cpu"]), default="wall", show_default=True,
                        help="What --time-budget counts: wall-clock seconds, or this process's CPU seconds (all its "
                             "threads), which other jobs on a shared machine do not take (hybridref/clock.py).")(f)


def check_resume(resume, checkpoint):
    if resume and not checkpoint:
        raise click.BadParameter("--resume needs --checkpoint PATH", param_hint="--resume")


def open_backend(name, threads, mpi_mode=None):
    hint = "--backend" if name else "HYBRIDREF_BACKEND"
    name = name or default_backend_name()
    if mpi_mode and name != "mpi":
        raise click.BadParameter(f"only the mpi backend takes a mode, not {name!r}", param_hint="--mpi-mode")
    try:
        with warnings.catch_warnings():  # the C backend's warning about $OMP_NUM_THREADS: echoed below instead
            warnings.simplefilter("ignore", ThreadCapWarning)
            be = get_backend(name, **({"mode": mpi_mode} if mpi_mode else {}))
    except UserError:
        raise
    except (ValueError, ImportError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint=hint) from None
    if threads is not None and not hasattr(be, "set_threads"):
        raise click.BadParameter(f"backend {be.name!r} does not take a thread count", param_hint="--threads")
    if hasattr(be, "set_threads"):
        if threads is None:  # again here: get_backend may hand back a backend an earlier command in this process set
            threads = environment_threads(lambda message: click.echo(f"warning: {message}", err=True))
        if threads is not None:
            be.set_threads(threads)
    return be


class _Main(click.Group):
    """Expected errors (UserError) become one line and status 1, unless --debug; under mpiexec, a
    process leaving with an error (click exits with status 1 or 2) takes the whole job down, rather
    than leaving the others blocked in a receive; uncaught exceptions are the mpi backend's
    excepthook's."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(str(e)) from None

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **kwargs)
        except SystemExit as e:
            abort_job_if_launched(e.code)
            raise


@click.group(cls=_Main)
@click.version_option(package_name="hybridref")
@click.option("--debug", is_flag=True, envvar="HYBRIDREF_DEBUG",
              help="Show the traceback of an expected error too ($HYBRIDREF_DEBUG=1).")
def main(debug):
    """hybridref: attention / state-space hybrid models in hand-written C."""


@main.command()
def info():
    """Backends, CPU features in use and thread count."""
    click.echo(f"default backend: {default_backend_name()}")
    for name, problem in available_backends().items():
        click.echo(f"  {name:8s} " + (get_backend(name).describe() if problem is None else f"unavailable: {problem}"))
    try:
        from .backends.c import library
        click.echo(library.describe_isas())
        click.echo(f"threads: {get_backend('c').threads} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
                   f"cores={os.cpu_count()})")
    except ImportError as e:
        click.echo(f"C kernels not available: {e}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON line.")
def models(as_json):
    """The presets: layer pattern, parameters, decode state memory (per token of context and fixed, at
    4,096 and 32,768 tokens, one stream)."""
    from .describe import format_models, models_table
    rows = models_table()
    click.echo(json.dumps(rows) if as_json else format_models(rows))


@main.command()
@click.option("--arch", type=click.Choice(list(PRESETS)), required=True, help="The preset to describe.")
@click.option("--context", type=click.IntRange(min=1, max=2 ** 20), default=4096, show_default=True,
              help="Context of the decode state shapes shown (batch 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON line.")
def describe(arch, context, as_json):
    """The layer table of a preset: per block its mixer kind and parameters, MLP, decode state shapes."""
    from .describe import VOCAB, format_layers, layer_table
    from .models.char_lm import CharLM
    model = CharLM.preset(arch, VOCAB).to("numpy")
    rows = layer_table(model, context)
    click.echo(json.dumps(rows) if as_json else format_layers(model, rows, context))


@main.group()
def train():
    """Train a model."""


@train.command()
@backend_option
@click.option("--mpi-mode", type=click.Choice(["sequence", "data"]), default=None,
              help="With --backend mpi: split each sequence (default, $HYBRIDREF_MPI_MODE) or the batch over the "
                   "processes of mpiexec.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=3e-3, show_default=True,
              help="Peak learning rate (warmup, then cosine decay to 0).")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=0.05, show_default=True)
@click.option("--patch", type=click.Choice(["4", "7"]), default="7", show_default=True,
              help="Patch side: 7 -> 16 tokens of 49 pixels, 4 -> 49 tokens of 16 pixels.")
@click.option("--dropout", type=FiniteFloat(min=0, max=1, max_open=True), default=0.0,
              show_default=True, help="Residual-branch dropout probability while training.")
@click.option("--directions", type=click.Choice(["1", "2", "4"]), default="1", show_default=True,
              help="Scans of each Mamba layer: 1 causal, 2 forward and backward (Vision Mamba), 4 the patch "
                   "grid row- and column-major, both ways (VMamba's cross scan).")
@click.option("--shift", type=click.IntRange(min=0, max=4), default=2, show_default=True,
              help="Random-translation augmentation, in pixels (0: none).")
@click.option("--time-budget", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Stop training after this many seconds (evaluation excluded).")
@budget_clock_option
@click.option("--subset", type=click.IntRange(min=1), default=None,
              help="Use only the first N training and N test images (quick runs).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding mnist/*.gz (default: $HYBRIDREF_DATA, else download to the cache).")
@checkpoint_options("at the end of every epoch")
@plot_option
@click.option("--json", "as_json", is_flag=True, help="Print a final machine-readable JSON line.")
def mnist(backend, threads, mpi_mode, epochs, batch_size, lr, weight_decay, patch, dropout, directions, shift,
          time_budget, budget_clock, subset, seed, data_dir, checkpoint, checkpoint_every, resume, plot, as_json):
    """Train the tiny MNIST hybrid (6 Mamba + 2 attention layers) and report test accuracy.

    Under `mpiexec -n P ... --backend mpi` every process computes its share and rank 0 reports."""
    from .train_mnist import train_mnist

    check_resume(resume, checkpoint)
    be = open_backend(backend, threads, mpi_mode)
    if plot and be.rank == 0:
        check_plot(plot)
    echo = click.echo if be.rank == 0 else (lambda *args, **kwargs: None)
    echo(f"backend {be.describe()}", err=True)
    bar = {}

    def on_step(i, n):
        if be.rank:
            return
        if "bar" not in bar:
            bar["bar"] = click.progressbar(length=n, label="train", file=sys.stderr)
            bar["bar"].__enter__()
        bar["bar"].update(1)
        if i == n:
            bar.pop("bar").__exit__(None, None, None)

    def on_epoch(r):
        if "bar" in bar:
            bar.pop("bar").__exit__(None, None, None)
        echo(f"epoch {r['epoch']:3d}  train loss {r['train_loss']:.4f} acc {r['train_acc']:.4f}  "
                   f"test loss {r['test_loss']:.4f} acc {r['test_acc']:.4f}  train time {r['train_time_s']:.1f}s")

    out = train_mnist(be, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, patch=int(patch),
                      shift=shift, dropout=dropout, seed=seed, data_dir=data_dir, time_budget=time_budget,
                      subset=subset, on_step=on_step, on_epoch=on_epoch, directions=int(directions),
                      budget_clock=budget_clock,
                      checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume)
    echo(f"final test accuracy {out['final_test_acc']:.4f} after {out['train_time_s']:.1f}s of training "
         f"({out['params']} parameters)")
    if plot and be.rank == 0:
        plot_mnist(out["history"], plot, f"MNIST hybrid {out['config']['pattern']}, {out['params']:,} parameters")
    if as_json:
        summary = {k: v for k, v in out.items() if k != "model"}
        echo(json.dumps(summary))


@main.group()
def bench():
    """Benchmarks that need more than pytest-benchmark (several processes)."""


@bench.command("mpi")
@click.option("--procs", type=ProcessCounts(), default="1,2", show_default=True,
              help="Process counts to run, comma-separated.")
@click.option("--tokens", type=click.IntRange(min=1), default=32768, show_default=True)
@click.option("--pattern", default="MMMA", show_default=True, help="Layer pattern (M = Mamba, A = attention).")
@click.option("--d-model", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--window", type=click.IntRange(min=0), default=256, show_default=True,
              help="Sliding window of the attention blocks.")
@click.option("--threads", type=ThreadCount(), default=1, show_default=True, help="Threads per process.")
@click.option("--steps", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed forward+backward passes (after one warm-up).")
@click.option("--scan", type=click.Choice(["pipeline", "exscan"]), default="pipeline", show_default=True,
              help="How the selective scan's state crosses processes: a pipeline over channel groups, or every "
                   "process at once then again from the state an Exscan gives it ($HYBRIDREF_MPI_SCAN elsewhere).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line per process count.")
def bench_mpi(procs, tokens, pattern, d_model, window, threads, steps, scan, as_json):
    """Forward + backward of a Mamba-heavy stack on one long sequence, over 1, 2, ... processes.

    Each process count is one `mpiexec -n P` job; the table shows the median step time."""
    try:
        from .backends.mpi.launch import run_bench
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    first = None
    for p in procs:
        try:
            out = run_bench(p, tokens=tokens, pattern=pattern, d_model=d_model, window=window, threads=threads,
                            steps=steps, scan=scan)
        except RuntimeError as e:
            raise click.ClickException(str(e)) from None
        first = first or out
        if as_json:
            click.echo(json.dumps(out))
        else:
            click.echo(f"P={p}  threads/process={threads}  tokens={tokens}  pattern={pattern}  scan={scan}  "
                       f"step {out['median_s']:.3f} s (median of {steps})  "
                       f"speedup vs P={first['processes']}: x{first['median_s'] / out['median_s']:.2f}")


# -- Tiny Shakespeare: training, streaming generation, evaluation --------------------------------------

class Duration(click.ParamType):
    """A duration: seconds (600, 600s) or minutes (10m) or hours (0.5h); -> seconds."""
    name = "duration"
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            scale = self.units.get(text[-1:], None)
            try:
                seconds = float(text[:-1] if scale else text) * (scale or 1.0)
            except ValueError:
                self.fail(f"{value!r} is not a duration: use seconds (600, 600s), minutes (10m) or hours (0.5h)",
                          param, ctx)
        if not (math.isfinite(seconds) and seconds > 0):
            self.fail(f"{value!r}: the duration must be positive and finite", param, ctx)
        return seconds


_PRESET_PATTERNS = ", ".join(f"{name} {preset['pattern']}" for name, preset in PRESETS.items())


@train.command()
@backend_option
@click.option("--arch", type=click.Choice(list(PRESETS)), default="hybrid", show_default=True,
              help=f"Preset: 6 blocks of d_model 128 ({_PRESET_PATTERNS}), ~1.2M params.")
@click.option("--pattern", default=None, help="Override the preset's layer pattern (A = attention, M = Mamba).")
@click.option("--d-model", type=click.IntRange(min=8), default=None, help="Override the width (default 128).")
@click.option("--moe", default=None, metavar="OPTIONS",
              help="Mixture-of-experts MLPs (Jamba/Mixtral style): 'default' (8 experts, top-2, every other block "
                   "from block 1, aux loss 0.01) or name=value pairs, e.g. 'n_experts=4,top_k=1,period=1,offset=0' "
                   "(also aux_loss_coef, z_loss_coef, normalize_top_k). Reports the aux loss and each expert's "
                   "share of the tokens at every evaluation.")
@click.option("--steps", type=click.IntRange(min=1), default=5000, show_default=True,
              help="Optimizer steps (the cosine schedule's length unless --time-budget is given).")
@click.option("--time-budget", type=Duration(), default=None,
              help="Train for this long (600, 600s, 10m; evaluation excluded); the cosine schedule then runs "
                   "over this time.")
@budget_clock_option
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--block-size", type=click.IntRange(min=2), default=256, show_default=True, help="Context length.")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=2e-3, show_default=True,
              help="Peak learning rate (warmup, then cosine decay to lr/10).")
@click.option("--warmup", type=click.IntRange(min=1), default=100, show_default=True, help="Warmup steps.")
@click.option("--weight-decay", type=FiniteFloat(min=0), default=0.1, show_default=True)
@click.option("--dropout", type=FiniteFloat(min=0, max=1, max_open=True), default=0.0,
              show_default=True, help="Residual-branch dropout probability while training.")
@click.option("--eval-every", type=click.IntRange(min=1), default=250, show_default=True,
              help="Validation loss every N steps (and at the end).")
@click.option("--eval-batches", type=click.IntRange(min=1), default=20, show_default=True)
@checkpoint_options("at the end")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding tinyshakespeare/input.txt (default: $HYBRIDREF_DATA, else download).")
@plot_option
@click.option("--json", "as_json", is_flag=True, help="Print a final machine-readable JSON line.")
def shakespeare(backend, threads, arch, pattern, d_model, moe, steps, time_budget, budget_clock, batch_size, block_size,
                lr, warmup, weight_decay, dropout, eval_every, eval_batches, checkpoint, checkpoint_every, resume, seed,
                data_dir, plot, as_json):
    """Train a character LM on Tiny Shakespeare and report validation loss (nats/char)."""
    from .train_shakespeare import train_shakespeare

    check_resume(resume, checkpoint)
    be = open_backend(backend, threads)
    if plot:
        check_plot(plot)
    click.echo(f"backend {be.describe()}", err=True)
    overrides = {k: v for k, v in (("pattern", pattern), ("d_model", d_model), ("dropout", dropout or None))
                 if v is not None}
    if moe is not None:
        try:
            overrides["moe"] = parse_moe_option(moe)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--moe") from None

    live = sys.stderr.isatty()

    def on_step(step, total, loss, lr_now, elapsed):
        if not live:
            return
        left = f"{elapsed:.0f}/{time_budget:.0f}s" if time_budget else f"{step}/{total}"
        click.echo(f"\rstep {step:5d}  loss {loss:.4f}  lr {lr_now:.2e}  {left}   ", nl=False, err=True)

    def on_eval(r):
        if live:
            click.echo("\r" + " " * 72 + "\r", nl=False, err=True)
        click.echo(f"step {r['step']:5d}  train loss {r['train_loss']:.4f}  val loss {r['val_loss']:.4f}  "
                   f"train time {r['train_time_s']:.1f}s", err=False)
        if "expert_load" in r:
            click.echo(f"           moe aux loss {r['aux_loss']:.4f}  tokens per expert "
                       + "  ".join("[" + " ".join(f"{f:.2f}" for f in layer) + "]" for layer in r["expert_load"]))

    out = train_shakespeare(be, arch=arch, steps=steps, batch_size=batch_size, block_size=block_size, lr=lr,
                            weight_decay=weight_decay, warmup=warmup, eval_every=eval_every, eval_batches=eval_batches,
                            time_budget=time_budget, seed=seed, data_dir=data_dir, checkpoint=checkpoint,
                            checkpoint_every=checkpoint_every, resume=resume, model_overrides=overrides,
                            on_step=on_step, on_eval=on_eval, budget_clock=budget_clock)
    click.echo(f"final val loss {out['final_val_loss']:.4f} (perplexity {out['val_perplexity']:.2f}) after "
               f"{out['steps']} steps, {out['train_time_s']:.1f}s of training, {out['tokens_per_s']:.0f} tokens/s "
               f"({out['params']} parameters)")
    if plot:
        plot_shakespeare(out["history"], plot, f"Tiny Shakespeare, {arch} ({out['config']['pattern']}), "
                                               f"{out['params']:,} parameters")
    if as_json:
        click.echo(json.dumps({k: v for k, v in out.items() if k not in ("model", "vocab")}))


@main.command()
@backend_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--prompt", default="\n", show_default=True,
              help="Text; for a model converted from Hugging Face it needs the `tokenizers` package and the "
                   "tokenizer.json convert copied beside the checkpoint.")
@click.option("--prompt-ids", default=None, metavar="IDS",
              help="A converted model's prompt as token ids, comma-separated (1,2,3): the output is token ids.")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--temperature", type=FiniteFloat(min=0), default=0.8, show_default=True,
              help="0 picks the most likely character (token).")
@click.option("--top-k", type=click.IntRange(min=1), default=None)
@click.option("--top-p", type=FiniteFloat(min=0, max=1, min_open=True), default=None)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--weights", type=click.Choice(["f32", "bf16"]), default="f32", show_default=True,
              help="The C decoder's weight matrices: bf16 stores them in bfloat16 (half the bytes a token reads; "
                   "float32 arithmetic on the rounded weights).")
@click.option("--stop-id", "stop_ids", type=click.IntRange(min=0), multiple=True, metavar="ID",
              help="A converted model's end-of-sequence token id (repeatable; its config.json's eos_token_id): "
                   "generation ends after printing it.")
def generate(backend, threads, checkpoint, prompt, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed,
             weights, stop_ids):
    """Stream text sampled from a checkpointed character LM, or tokens from a converted model."""
    from .generate import load_model, stream

    be = open_backend(backend, threads)
    if weights != "f32" and be.name != "c":
        raise click.BadParameter(f"--weights {weights} is an option of the C backend's decoder (--backend c); the "
                                 f"{be.name} backend decodes with the float32 weights", param_hint="--weights")
    model, vocab = load_model(checkpoint, be, need_vocab=False)
    if vocab is None:
        return _generate_tokens(model, checkpoint, prompt, prompt_ids, max_new_tokens, temperature, top_k, top_p,
                                seed, weights, stop_ids)
    if prompt_ids is not None:
        raise click.BadParameter(f"{checkpoint} is a character LM: give its prompt as text (--prompt)",
                                 param_hint="--prompt-ids")
    if stop_ids:
        raise click.BadParameter(f"{checkpoint} is a character LM, which has no end-of-sequence token: --stop-id "
                                 f"is for models converted from Hugging Face", param_hint="--stop-id")
    text = stream(model, vocab, prompt, max_new_tokens, temperature, top_k, top_p, seed, weights)
    click.echo(prompt, nl=False)
    for ch in text:
        click.echo(ch, nl=False)
    click.echo()


def _generate_tokens(model, checkpoint, prompt, prompt_ids, max_new_tokens, temperature, top_k, top_p, seed, weights,
                     stop_ids):
    """A model whose tokens are ids (converted from Hugging Face): --prompt-ids in, ids out (comma-separated,
    the prompt's first); or a text prompt through its tokenizer, text out (the decoded ids so far, each
    step printing what they add, as a token may be part of a character or a word)."""
    import numpy as np

    from .convert.tokenizer import load_tokenizer
    from .generate import parse_ids, stream_ids

    if prompt_ids is not None:
        ids = parse_ids(prompt_ids, model.vocab_size)
        click.echo(",".join(map(str, ids)), nl=False)
        for token in stream_ids(model, ids, max_new_tokens, temperature, top_k, top_p, seed, weights, stop_ids):
            click.echo(f",{token}", nl=False)
        click.echo()
        return
    tokenizer = load_tokenizer(checkpoint)
    ids = list(tokenizer.encode(prompt).ids)
    if any(not 0 <= i < model.vocab_size for i in ids):
        raise UserError(f"the tokenizer beside {checkpoint} gives ids beyond the model's {model.vocab_size}: it is "
                        f"not this model's tokenizer")
    shown = tokenizer.decode(ids)
    click.echo(prompt, nl=False)
    for token in stream_ids(model, np.array(ids, dtype=np.int64), max_new_tokens, temperature, top_k, top_p, seed,
                            weights, stop_ids):
        ids.append(token)
        text = tokenizer.decode(ids)
        click.echo(text[len(shown):], nl=False)
        shown = text
    click.echo()


@main.command()
@click.option("--from-hf", "from_hf", type=click.Path(), default=None, metavar="DIR",
              help="A Hugging Face transformers checkpoint folder (config.json + safetensors) to convert to --out.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="The hybridref checkpoint --from-hf writes (its tokenizer.json is copied beside it).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None, metavar="PATH",
              help="A hybridref checkpoint to convert to the transformers folder --to-hf.")
@click.option("--to-hf", "to_hf", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="The transformers folder (config.json + model.safetensors) --checkpoint is written to.")
def convert(from_hf, out, checkpoint, to_hf):
    """Hugging Face checkpoints in (--from-hf DIR --out PATH) and out (--checkpoint PATH --to-hf DIR):
    the architectures of hybridref/convert (Mamba, Mamba-2, Llama, Jamba, ...); anything else is refused by name."""
    from . import convert as hf

    if (from_hf is None) == (to_hf is None):
        raise click.UsageError("give either --from-hf DIR --out PATH, or --checkpoint PATH --to-hf DIR")
    if from_hf is not None:
        if out is None or checkpoint is not None:
            raise click.UsageError("--from-hf DIR takes --out PATH (the hybridref checkpoint to write)")
        summary = hf.from_hf(from_hf, out)
        click.echo(f"wrote {out}: {summary['architecture']}, {summary['parameters']:,} parameters"
                   + (f", tokenizer {summary['tokenizer']}" if summary["tokenizer"] else ", no tokenizer.json"))
    else:
        if checkpoint is None or out is not None:
            raise click.UsageError("--to-hf DIR takes --checkpoint PATH (the hybridref checkpoint to read)")
        summary = hf.to_hf(checkpoint, to_hf)
        click.echo(f"wrote {to_hf}: {summary['architecture']}, {summary['parameters']:,} parameters, "
                   f"tie_word_embeddings {str(summary['tied_embeddings']).lower()}")


@main.command()
@backend_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), required=True)
@click.option("--split", type=click.Choice(["val", "test", "train"]), default=None,
              help="The data: Tiny Shakespeare's val (default) or train split for a character LM; MNIST's test "
                   "(default) or train set for an MNIST checkpoint.")
@click.option("--block-size", type=click.IntRange(min=1), default=256, show_default=True,
              help="Window length: the split is read as consecutive windows of this many characters.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Folder holding tinyshakespeare/input.txt or mnist/*.gz (default: $HYBRIDREF_DATA, else download).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a final machine-readable JSON line (for MNIST with the 10x10 confusion matrix).")
def evaluate(backend, threads, checkpoint, split, block_size, batch_size, data_dir, as_json):
    """Loss of a checkpointed character LM on the whole Tiny Shakespeare split (every character once), or
    loss, accuracy and confusion matrix of an MNIST checkpoint on the whole test set."""
    from .checkpoint import load_checkpoint
    from .data.shakespeare import load_split
    from .generate import load_model
    from .train_shakespeare import evaluate_split

    be = open_backend(backend, threads)
    ckpt = load_checkpoint(checkpoint)
    if ckpt["model"] == "MnistHybrid":
        return _evaluate_mnist(be, checkpoint, ckpt, split or "test", batch_size, data_dir, as_json)
    split = split or "val"
    if split == "test":
        raise click.BadParameter(f"{checkpoint} is a character LM: Tiny Shakespeare has the splits val and train",
                                 param_hint="--split")
    model, vocab = load_model(checkpoint, be)  # reads the file again: the text models' loader
    ids = load_split(split, data_dir, vocab, owner=f"{checkpoint}: the checkpoint")
    loss = evaluate_split(model, ids, batch_size, block_size)
    chars = (len(ids) - 1) // block_size * block_size
    click.echo(f"{split} loss {loss:.4f} nats/char (perplexity {math.exp(loss):.2f}) over {chars} characters")
    if as_json:
        click.echo(json.dumps(dict(checkpoint=checkpoint, split=split, loss=loss, perplexity=math.exp(loss),
                                   characters=chars, block_size=block_size)))


def _evaluate_mnist(be, checkpoint, ckpt, split, batch_size, data_dir, as_json):
    """`evaluate` of an MNIST checkpoint: the whole test (or training) set, the confusion matrix in --json
    (row: the true digit, column: the predicted one)."""
    from .data.mnist import load_mnist
    from .train_mnist import evaluate, load_mnist_model

    if split == "val":
        raise click.BadParameter(f"{checkpoint} is an MNIST hybrid: MNIST has the sets test and train",
                                 param_hint="--split")
    model = load_mnist_model(checkpoint, ckpt, be)
    (train_x, train_y), (test_x, test_y) = load_mnist(data_dir)
    images, labels = (test_x, test_y) if split == "test" else (train_x, train_y)
    loss, accuracy, confusion = evaluate(model, images, labels, batch_size)
    if be.rank:
        return
    click.echo(f"{split} accuracy {accuracy:.4f}, loss {loss:.4f} over {len(labels)} images")
    if as_json:
        click.echo(json.dumps(dict(checkpoint=checkpoint, split=split, loss=loss, accuracy=accuracy, images=len(labels),
                                   confusion=confusion.tolist())))


@main.command()
@click.argument("name", type=click.Choice(EXPERIMENTS))
@click.option("--quick", is_flag=True, help="A tiny grid that runs in seconds (tests, CI).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder of results.jsonl, NAME.md and NAME.png (default: runs/experiments/NAME, or NAME-quick).")
@click.option("--resume", is_flag=True, help="Continue the run in --out: the cells its results.jsonl holds are skipped.")
@click.option("--report", "report_only", is_flag=True,
              help="Run nothing: write the table and the plot from --out's results.jsonl.")
@click.option("--threads", type=ThreadCount(), default=1, show_default=True,
              help="OpenMP threads of the C kernels in each cell.")
@click.option("--only", "only", multiple=True, metavar="KEY=V1,V2",
              help="Run only the cells whose KEY is one of the values (repeat to narrow further), e.g. "
                   "--only seed=0 --only preset=samba,jamba; --resume later runs the rest.")
def experiment(name, quick, out, resume, report_only, threads, only):
    """Run a measured experiment: each cell of its grid in its own process, one JSON line per cell in
    OUT/results.jsonl as it is measured, then the table OUT/NAME.md and the plot OUT/NAME.png."""
    from .experiments.runner import default_out, run_experiment, write_report

    selection = []
    for item in only:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise click.BadParameter(f"{item!r} is not KEY=V1,V2 (e.g. seed=0)", param_hint="--only")
        selection.append((key, set(values.split(","))))
    if report_only:
        paths = write_report(name, out or default_out(name, quick), quick)
    else:
        _, paths = run_experiment(name, quick=quick, out=out, resume=resume, threads=threads,
                                  echo=lambda line: click.echo(line, err=True), only=selection)
    click.echo("wrote " + ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()

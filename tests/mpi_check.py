"""Run under `mpiexec -n P` by tests/test_mpi.py: the mpi backend against the local backend in one
process (every process computes that reference itself), for the sequence-mixing ops (every declared
StatePassing and Halo op generically, with the examples of their declarations, and the attention,
RoPE, dropout and mean-pool mechanisms), for the whole MNIST hybrid, and for a CharLM around every
registered mixer and each of its test_variants (outputs, loss, every parameter gradient). An assertion failing on any process
aborts the job (the backend's excepthook), so the exit status is the verdict.

    mpiexec -n 3 python tests/mpi_check.py ops model --local c
    mpiexec -n 4 python tests/mpi_check.py model --local c --mode data
    mpiexec -n 2 python tests/mpi_check.py errors
    mpiexec -n 4 python tests/mpi_check.py ops model --scan exscan
    mpiexec -n 3 python tests/mpi_check.py mixers
    mpiexec -n 2 python tests/mpi_check.py moe --mode data
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from helpers import rel_err  # noqa: E402

import test_sequence_forms as forms  # noqa: E402

from hybridref.backends.base import SEQUENCE_FORMS, op_signature  # noqa: E402
from hybridref.backends.mpi import MPIBackend, sequence, state_passing  # noqa: E402
from hybridref.layers.moe import moe_layers  # noqa: E402
from hybridref.layers.registry import mixers  # noqa: E402
from hybridref.models.char_lm import CharLM  # noqa: E402
from hybridref.models.mnist_hybrid import MnistHybrid  # noqa: E402

TOL = 1e-5  # the bound: float32 partial sums and lse merges sit near 1e-7


def gather_seq(be, a, axis=1):
    """The whole sequence from every process's slice."""
    return np.concatenate(be.comm.allgather(a), axis=axis)


def close(name, got, want, tol=TOL):
    err = rel_err(got, want)
    assert err < tol, f"rank {be_rank}: {name}: relative error {err:.2e} >= {tol:.0e}"


def check_ops(be, rng):
    ref = be.local
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    P = be.size
    # T = 2P + 1: unequal slices, and with W = 4 some are shorter than the W-1 halo when P >= 3
    for T in (2 * P + 1, 5 * P + 2):
        be.shard_tokens(np.zeros((1, T, 1)))
        lo, hi = be.seq_edges[be.rank], be.seq_edges[be.rank + 1]
        part = lambda a: np.ascontiguousarray(a[:, lo:hi])

        # every declared StatePassing op (the backend's own), and time-reversed: the other direction
        # of the same mechanism (state_passing.make_ops on the flipped local op); every Halo op
        for name in forms.STATE_PASSING:
            form, local = SEQUENCE_FORMS[name], (getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward"))
            rform, *rlocal = forms.time_reversed(name, form, *local)
            for what, fm, loc, split in (
                    (name, form, local, (getattr(be, f"{name}_forward"), getattr(be, f"{name}_backward"))),
                    (f"{name} time-reversed", rform, rlocal, state_passing.make_ops(be, name, rform, *rlocal))):
                for with_state in (False, True):
                    check_state_passing(be, name, f"{what} T={T}", fm, loc, split, rng,
                                        forms.example(name, rng, np.float32, T), with_state, lo, hi)
        for name in forms.HALO:
            local = getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward")
            split = getattr(be, f"{name}_forward"), getattr(be, f"{name}_backward")
            for with_prefix in (False, True):
                check_halo(be, name, f"{name} T={T}", SEQUENCE_FORMS[name], local, split, rng,
                           forms.example(name, rng, np.float32, T), with_prefix, lo, hi)
                check_halo_time_reversed(be, name, f"{name} time-reversed T={T}", SEQUENCE_FORMS[name], local,
                                         rng, forms.example(name, rng, np.float32, T), with_prefix, lo, hi)

        # a permutation of the whole sequence (the cross scan's re-ordering): data movement, bit for bit
        x = f32(2, T, 3)
        for order in (rng.permutation(T), np.arange(T)[::-1]):
            assert np.array_equal(gather_seq(be, be.permute_positions(part(x), order)), x[:, order]), "permute"
        assert be.sequence_length(hi - lo) == T

        # attention: full causal and a window shorter than a slice (far blocks are skipped), and with
        # sinks (process 0's first 2 positions, sent to every process): beside a window that reaches
        # process 0's other keys and beside one that does not
        q, k, v, do = f32(2, T, 4, 5), f32(2, T, 2, 5), f32(2, T, 2, 5), f32(2, T, 4, 5)
        for window, sinks in ((None, 0), (3, 0), (3, 2), (1, 2)):
            o_ref, lse_ref = ref.attention_forward(q, k, v, window, 0, sinks)
            g_ref = ref.attention_backward(do, q, k, v, o_ref, lse_ref, window, 0, sinks)
            ql, kl, vl = part(q), part(k), part(v)
            o, lse = be.attention_forward(ql, kl, vl, window, 0, sinks)
            close(f"attention T={T} window={window} sinks={sinks} o", gather_seq(be, o), o_ref)
            close("attention lse", gather_seq(be, lse, axis=2), lse_ref)
            g = be.attention_backward(part(do), ql, kl, vl, o, lse, window, 0, sinks)
            for name, got, want in zip(("dq", "dk", "dv"), g, g_ref):
                close(f"attention {name}", gather_seq(be, got), want)

        # rotary embedding at global positions
        x, dy = f32(2, T, 3, 6), f32(2, T, 3, 6)
        close("rope y", gather_seq(be, be.rope_forward(part(x), 5, 100.0)), ref.rope_forward(x, 5, 100.0))
        close("rope dx", gather_seq(be, be.rope_backward(part(dy), 5, 100.0)), ref.rope_backward(dy, 5, 100.0))

        # dropout: each process draws its part of the one-process mask, bit for bit
        x = f32(2, T, 5)
        y = gather_seq(be, be.dropout(part(x), 0.3, 77, time_offset=4))
        assert np.array_equal(y, ref.dropout(x, 0.3, 77, time_offset=4)), "dropout mask differs"

        # mean-pool: each process gets its rows of the batch
        x, dy = f32(P + 2, T, 3), f32(P + 2, 3)
        y = be.mean_pool_forward(part(x))
        close("mean_pool y", np.concatenate(be.comm.allgather(y)), ref.mean_pool_forward(x))
        dx = be.mean_pool_backward(be.local_batch(dy), T)
        close("mean_pool dx", gather_seq(be, dx), ref.mean_pool_backward(dy, T))


def check_state_passing(be, name, what, form, local, split, rng, args, with_state, lo, hi):
    """A StatePassing op split over the processes against the local op on the whole sequence: each
    process's outputs and per-position gradients, its h_last (the last process along the op's
    direction: the whole sequence's), the sums of the partial gradients of weights and h0."""
    fop, bop = f"{name}_forward", f"{name}_backward"
    h0, douts, dh_last = forms.state_passing_case(form, rng, np.float32, args, with_state)
    *outs, h_last = forms.call(local[0], fop, {**args, "h0": h0})
    *grads, dh0 = forms.call(local[1], bop, {**douts, **args, "h0": h0, "dh_last": dh_last})
    tin, tdout = forms.t_axes(form.inputs), forms.t_axes(form.outputs, "d")
    mine = {**args, **{n: forms.cut(args[n], ax, lo, hi) for n, ax in tin.items()}}
    my_douts = {n: forms.cut(douts[n], ax, lo, hi) for n, ax in tdout.items()}
    *got, h = forms.call(split[0], fop, {**mine, "h0": h0})
    for out, y, want, ax in zip(form.outputs, got, outs, tdout.values()):
        close(f"{what} {out}", gather_seq(be, y, ax), want)
    last = be.rank == (0 if form.reverse else be.size - 1)
    if last:
        close(f"{what} h_last", h, h_last)
    # dh_last belongs to the last process's h_last: the others pass none
    *g, dh = forms.call(split[1], bop, {**my_douts, **mine, "h0": h0, "dh_last": dh_last if last else None})
    for (n, ax), got_g, want in zip(tin.items(), g, grads):
        close(f"{what} d{n}", be.all_sum(got_g) if ax is None else gather_seq(be, got_g, ax), want)
    assert (dh is None) == (h0 is None)
    if h0 is not None:
        close(f"{what} dh0", be.all_sum(dh), dh0)


def check_halo(be, name, what, form, local, split, rng, args, with_prefix, lo, hi):
    """A Halo op split over the processes against the local op on the whole sequence."""
    fop, bop = f"{name}_forward", f"{name}_backward"
    x_name, dy_name = op_signature(fop)[0][0], op_signature(bop)[0][0]
    bargs, prefix = forms.halo_case(name, form, rng, np.float32, args, with_prefix)
    y = forms.call(local[0], fop, {**args, "prefix": prefix})
    dy = rng.standard_normal(y.shape).astype(np.float32)
    *grads, dprefix = forms.call(local[1], bop, {dy_name: dy, **bargs, "prefix": prefix})
    x = np.ascontiguousarray(args[x_name][:, lo:hi])
    close(f"{what} y", gather_seq(be, forms.call(split[0], fop, {**args, x_name: x, "prefix": prefix})), y)
    *g, dp = forms.call(split[1], bop, {**bargs, dy_name: np.ascontiguousarray(dy[:, lo:hi]), x_name: x,
                                        "prefix": prefix})
    close(f"{what} dx", gather_seq(be, g[0]), grads[0])
    for i in range(1, len(grads)):
        assert (g[i] is None) == (grads[i] is None)
        if grads[i] is not None:
            close(f"{what} gradient {i}", be.all_sum(g[i]), grads[i])
    assert (dp is None) == (prefix is None)
    if prefix is not None:
        close(f"{what} dprefix", be.all_sum(dp), dprefix)


def check_halo_time_reversed(be, name, what, form, local, rng, args, with_prefix, lo, hi):
    """A Halo op on be.time_reversed() (a backward-in-time scan's conv): every process holds its slice
    flipped, so together they hold the flipped sequence with the slices in reverse rank order, the
    caller's prefix going to the last process and each halo to the process before. Against the local
    op on the whole flipped sequence, this process's part of each output."""
    fop, bop = f"{name}_forward", f"{name}_backward"
    x_name, dy_name = op_signature(fop)[0][0], op_signature(bop)[0][0]
    T = args[x_name].shape[1]
    args = {**args, x_name: np.ascontiguousarray(args[x_name][:, ::-1])}
    bargs, prefix = forms.halo_case(name, form, rng, np.float32, args, with_prefix)
    y = forms.call(local[0], fop, {**args, "prefix": prefix})
    dy = rng.standard_normal(y.shape).astype(np.float32)
    *grads, dprefix = forms.call(local[1], bop, {dy_name: dy, **bargs, "prefix": prefix})
    mine = lambda a: np.ascontiguousarray(a[:, T - hi:T - lo])  # positions lo:hi, flipped
    rev, x = be.time_reversed(), mine(args[x_name])
    close(f"{what} y", forms.call(getattr(rev, fop), fop, {**args, x_name: x, "prefix": prefix}), mine(y))
    *g, dp = forms.call(getattr(rev, bop), bop, {**bargs, dy_name: mine(dy), x_name: x, "prefix": prefix})
    close(f"{what} dx", g[0], mine(grads[0]))
    for i in range(1, len(grads)):
        if grads[i] is not None:
            close(f"{what} gradient {i}", be.all_sum(g[i]), grads[i])
    assert (dp is None) == (prefix is None)
    if prefix is not None:
        close(f"{what} dprefix", be.all_sum(dp), dprefix)


def check_model(be, rng):
    """The MNIST hybrid with a windowed attention block and dropout: logits, loss and every gradient;
    its Mamba layers causal, bidirectional and cross-scanning (7×7 patches of 4 pixels)."""
    for directions in (1, 2, 4):
        check_mnist_model(be, rng, directions)


def check_mnist_model(be, rng, directions):
    kw = dict(patch=4, d_model=32, pattern="MAMA", n_heads=4, dropout=0.2, seed=3, directions=directions)
    ref_model, model = MnistHybrid(**kw).to(be.local), MnistHybrid(**kw).to(be)
    for m in (ref_model, model):
        m.blocks[3].mixer.window = 7  # a window shorter than a slice (49 tokens over P)
        m.set_dropout_seed((0, 5))
    images = rng.integers(0, 256, (2 * be.size + 1, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, len(images))

    logits_ref = ref_model.forward(images)
    loss_ref, probs = be.local.cross_entropy_forward(logits_ref, labels)
    ref_model.backward(be.local.cross_entropy_backward(probs, labels))

    logits = model.forward(images)
    y = be.local_batch(labels)
    loss, probs = be.cross_entropy_forward(logits, y)
    model.backward(be.cross_entropy_backward(probs, y))
    be.reduce_gradients(model.params())
    close(f"directions={directions} logits", logits, be.local_batch(logits_ref))
    close(f"directions={directions} loss", loss, loss_ref)
    ref_params = dict(ref_model.named_params())
    for name, p in model.named_params():
        close(f"directions={directions} grad {name}", p.grad, ref_params[name].grad)
    # the summed gradients are the same bits everywhere, so replicas stay identical
    for p in model.params():
        assert all(np.array_equal(p.grad, other) for other in be.comm.allgather(p.grad)), "replicas differ"


def check_mixers(be, rng):
    """Every registered mixer (with its test_options) between attention blocks, letter + "A" + letter,
    in a small CharLM with dropout: one training step's logits, loss and every gradient. A new mixer
    is checked here as soon as it registers; if its ops have no sequence form, the mpi backend
    refuses them in sequence mode and this check says which."""
    P = be.size
    configs = [(letter, spec, variant) for letter, spec in mixers().items()
               for variant in ({}, *getattr(spec.cls, "test_variants", ()))]
    for letter, spec, variant in configs:
        if LETTERS is not None and letter not in LETTERS:
            continue
        options = {letter: {**spec.test_options, **variant}, "A": mixers()["A"].test_options}
        kw = dict(vocab_size=11, d_model=16, pattern=letter + "A" + letter, mixers=options, dropout=0.1, seed=2)
        # with d_conv 4, slices of 2 are shorter than Mamba's conv halo (both ways, for a backward scan);
        # Mamba's cross scan (directions=4) reads square grids
        for T in (2 * P + 1, 4 * P + 3) if variant.get("directions") != 4 else (9, 16):
            ref_model, model = CharLM(**kw).to(be.local), CharLM(**kw).to(be)  # it shards its ids
            for m in (ref_model, model):
                m.set_dropout_seed((0, 7))
            ids = rng.integers(0, 11, (P + 1, T))  # data mode: a batch row or two per process
            targets = rng.integers(0, 11, (P + 1, T))
            check_training_step(be, ref_model, model, ids, targets,
                                f"mixer {letter} ({spec.name}) {variant or ''} pattern {kw['pattern']} T={T}")


def check_training_step(be, ref_model, model, ids, targets, what):
    """One training step (cross entropy of ids against targets, both (B,T)) of a CharLM on the mpi
    backend against the same model on the local backend in one process: logits, loss, every gradient."""
    V = ref_model.vocab_size
    logits_ref = ref_model.forward(ids)
    loss_ref, probs = be.local.cross_entropy_forward(logits_ref.reshape(-1, V), targets.reshape(-1))
    ref_model.backward(be.local.cross_entropy_backward(probs, targets.reshape(-1)).reshape(logits_ref.shape))

    logits = model.forward(ids)
    y = be.shard_tokens(targets).reshape(-1)
    loss, probs = be.cross_entropy_forward(logits.reshape(-1, V), y)
    model.backward(be.cross_entropy_backward(probs, y).reshape(logits.shape))
    be.reduce_gradients(model.params())
    close(f"{what} logits", gather_seq(be, logits, axis=1 if be.mode == "sequence" else 0), logits_ref)
    close(f"{what} loss", loss, loss_ref)
    ref_params = dict(ref_model.named_params())
    for name, p in model.named_params():
        close(f"{what} grad {name}", p.grad, ref_params[name].grad)


def check_moe(be, rng):
    """A CharLM with MoE MLPs (blocks 1 and 3, top-2 of 4 experts, balancing and z losses on) trains
    three SGD steps as one process: every step's loss (cross entropy + aux loss, whose balancing
    statistics the layers sum over processes) and expert load, and the weights after, within TOL."""
    P = be.size
    kw = dict(vocab_size=11, d_model=16, pattern="MAMA", n_heads=2, d_state=4, mlp_hidden=12, seed=4,
              moe=dict(n_experts=4, top_k=2, aux_loss_coef=0.1, z_loss_coef=0.01))
    ref_model, model = CharLM(**kw).to(be.local), CharLM(**kw).to(be)
    for step in range(3):
        ids, targets = rng.integers(0, 11, (P + 1, 4 * P + 3)), rng.integers(0, 11, (P + 1, 4 * P + 3))
        logits_ref = ref_model.forward(ids)
        loss_ref, probs = be.local.cross_entropy_forward(logits_ref.reshape(-1, 11), targets.reshape(-1))
        loss_ref += ref_model.aux_loss()
        ref_model.backward(be.local.cross_entropy_backward(probs, targets.reshape(-1)).reshape(logits_ref.shape))

        logits = model.forward(ids)
        y = be.shard_tokens(targets).reshape(-1)
        loss, probs = be.cross_entropy_forward(logits.reshape(-1, 11), y)
        loss += model.aux_loss()
        model.backward(be.cross_entropy_backward(probs, y).reshape(logits.shape))
        be.reduce_gradients(model.params())
        close(f"moe step {step} loss", loss, loss_ref)
        for layer, ref in zip(moe_layers(model), moe_layers(ref_model)):
            close(f"moe step {step} expert load", layer.load, ref.load)
        for m in (ref_model, model):
            for p in m.params():
                p.data -= 0.5 * p.grad
                p.grad[...] = 0
    ref_params = dict(ref_model.named_params())
    for name, p in model.named_params():
        close(f"moe weights {name} after 3 steps", p.data, ref_params[name].data)


def check_errors(be, rng):
    """Misuse is a ValueError naming the op, raised on every process before any message."""
    import pytest
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    q = f32(2, 3, 2, 4)
    with pytest.raises(ValueError, match="attention_forward: the mpi backend has no sequence split yet"):
        be.attention_forward(q, q, q)
    be.shard_tokens(np.zeros((1, 3 * be.size, 1)))
    with pytest.raises(ValueError, match=r"attention_forward: got 5 positions, but this process .* holds 3"):
        be.attention_forward(f32(2, 5, 2, 4), f32(2, 5, 2, 4), f32(2, 5, 2, 4))
    with pytest.raises(ValueError, match="attention_forward: the mpi backend splits self-attention"):
        be.attention_forward(q, q, q, None, 2)
    x, A = f32(1, 3, 4), f32(4, 2)
    with pytest.raises(ValueError, match="selective_scan_backward: the mpi backend has no forward of these arrays"):
        be.selective_scan_backward(x, x, x, A, f32(1, 3, 2), f32(1, 3, 2), f32(4))
    with pytest.raises(ValueError, match=f"mean_pool_forward: a batch of 1 rows cannot be shared by {be.size}"):
        be.mean_pool_forward(x)
    with pytest.raises(ValueError, match="attention_decode: the mpi backend splits each sequence over processes "
                                         r".* decode on the local backend \(be.local\)"):
        be.attention_decode(f32(2, 2, 4), f32(2, 2, 5, 4), f32(2, 2, 5, 4), 3)
    # an op without a declared form is refused, not run on the slice as if it were the whole sequence
    undeclared = sequence.sequence_ops(be, {k: v for k, v in SEQUENCE_FORMS.items() if k != "rope"})
    with pytest.raises(ValueError, match=r"rope_forward: the mpi backend .* no declared sequence form"):
        undeclared["rope_forward"](f32(2, 3, 2, 4))
    with pytest.raises(ValueError, match=r"permute_positions: order must be a permutation of the .* positions"):
        be.permute_positions(f32(2, 3, 4), np.zeros(3 * be.size, int))
    with pytest.raises(ValueError, match="cannot be split over"):
        be.shard_tokens(np.zeros((1, be.size - 1, 1)))


def main():
    global be_rank, LETTERS
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="+", choices=["ops", "model", "errors", "mixers", "moe"])
    ap.add_argument("--local", default="c")
    ap.add_argument("--mode", default="sequence")
    ap.add_argument("--scan", default="pipeline")
    ap.add_argument("--letters", help="mixers: only these registered letters (default: all)")
    args = ap.parse_args()
    be = MPIBackend(local=args.local, mode=args.mode, threads=1 if args.local == "c" else None, scan=args.scan)
    be_rank = be.rank
    LETTERS = args.letters
    rng = np.random.default_rng(0)  # the same data on every process
    for what in args.what:
        dict(ops=check_ops, model=check_model, errors=check_errors, mixers=check_mixers, moe=check_moe)[what](be, rng)
    be.comm.Barrier()
    if be.rank == 0:
        print(f"mpi_check {' '.join(args.what)} local={args.local} mode={args.mode} scan={args.scan} "
              f"P={be.size}: OK", flush=True)


be_rank = 0
LETTERS = None
if __name__ == "__main__":
    main()

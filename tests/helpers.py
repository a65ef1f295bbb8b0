"""Test helpers: finite differences in float64 and relative-error measures."""
import numpy as np


def rel_err(a, b):
    """Norm-wise relative error ‖a − b‖ / max(‖b‖, tiny)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def numeric_grad(f, x, eps=1e-6):
    """∂f/∂x by central differences; f() -> float reads x, which is perturbed in place (float64)."""
    assert x.dtype == np.float64
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def check_grads(loss, inputs, analytic, tol=1e-6, eps=1e-6):
    """Compare analytic gradients with central differences of loss() for each named input.

    Central differences in float64 with eps=1e-6 have truncation error O(eps²)
    and rounding error O(1e-16/eps) = O(1e-10) relative, so 1e-6 norm-wise
    relative error leaves three orders of margin while catching any wrong term.
    """
    for name, x in inputs.items():
        num = numeric_grad(loss, x, eps)
        err = rel_err(analytic[name], num)
        assert err < tol, f"gradient of {name}: relative error {err:.3e} >= {tol:.0e}"


def check_layer_grads(layer, x, G, rng):
    """check_grads and check_model_grads of L = Σ layer.forward(x) ⊙ G (float64, NumPy backend): every
    input coordinate and random coordinates of every parameter; returns the analytic {name: grad}."""
    def loss():
        out = layer.forward(x)
        layer.clear_saved()
        return float((out * G).sum())

    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(G)
    grads = {n: p.grad.copy() for n, p in layer.named_params()}
    check_grads(loss, {"x": x}, {"x": dx})
    check_model_grads(layer, loss, grads, rng)
    return grads


def run_backends(model, x, dy, backends):
    """{backend name: (output, backward's result, {param: grad})} of one forward and backward of the
    model (or layer) on each backend, from zeroed gradients."""
    out = {}
    for be in backends:
        model.to(be).zero_grad()
        y = model.forward(x)
        dx = model.backward(dy)
        out[be.name] = y, dx, {n: p.grad.copy() for n, p in model.named_params()}
    return out


def check_model_grads(model, loss, grads, rng, per_param=6):
    """Central differences (float64, eps 1e-6: truncation ~1e-12, rounding ~1e-10 relative) at
    `per_param` random coordinates of every parameter of `model`, against `grads` {name: array},
    entry-wise within 1e-6 · max(1, |numeric|) + 1e-9 (the rounding floor of a tiny gradient)."""
    for name, p in model.named_params():
        flat, g = p.data.reshape(-1), grads[name].reshape(-1)
        for i in rng.choice(flat.size, min(per_param, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            lp = loss()
            flat[i] = old - 1e-6
            lm = loss()
            flat[i] = old
            num = (lp - lm) / 2e-6
            assert abs(num - g[i]) <= 1e-6 * max(1.0, abs(num)) + 1e-9, (name, i, num, g[i])


def assert_same_for_thread_counts(be, run, counts=(1, 3)):
    """run() -> tuple of arrays must be bit-identical for the backend's thread count and `counts`."""
    import numpy as np
    saved = be.threads
    first = run()
    try:
        for threads in (saved, *counts):
            be.set_threads(threads)
            for a, b in zip(first, run()):
                np.testing.assert_array_equal(a, b)
    finally:
        be.set_threads(saved)


def decode_all(model, ids, prompt):
    """Logits for positions prompt-1 .. T-1 by prefill(ids[:, :prompt]) then one step per token."""
    dec = model.decoder(ids.shape[0], ids.shape[1])
    out = [dec.prefill(ids[:, :prompt])]
    for t in range(prompt, ids.shape[1]):
        out.append(dec.step(ids[:, t]))
    return np.stack(out, axis=1)


def check_lm_grads(model, be, ids, targets, rng, per_param):
    """check_model_grads for a character LM (float64, NumPy backend): the mean cross entropy of
    model.forward(ids) against targets (flat); returns the analytic gradients {name: array}."""
    V = model.vocab_size

    def loss():
        out = model.forward(ids)
        model.clear_saved()
        return be.cross_entropy_forward(out.reshape(-1, V), targets)[0]

    model.zero_grad()
    _, probs = be.cross_entropy_forward(model.forward(ids).reshape(-1, V), targets)
    model.backward(be.cross_entropy_backward(probs, targets).reshape(*ids.shape, V))
    grads = {n: p.grad.copy() for n, p in model.named_params()}
    check_model_grads(model, loss, grads, rng, per_param=per_param)
    return grads


def read_safetensors_file(path):
    """(tensors, metadata) of a safetensors file, read with the library (to damage a checkpoint in tests)."""
    from safetensors import safe_open
    with safe_open(str(path), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def write_safetensors_file(path, tensors, metadata):
    import safetensors.numpy
    safetensors.numpy.save_file(tensors, str(path), metadata)
    return str(path)

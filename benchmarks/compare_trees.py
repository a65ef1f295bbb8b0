"""Before/after timing of two checkouts of hybridref, interleaved on one machine: the MNIST training
step (the default model, batch 64, C backend) and one-stream decoding of the three character-LM
presets at context 64 and 4096 (the C decoder).

    python benchmarks/compare_trees.py OLD_TREE NEW_TREE [--rounds 5] [--threads 1]

Each tree must have its kernels built in place (`pip install -e .`, or `python csrc/build_ffi.py`
run in the tree). Every round runs one fresh process per tree, alternating old and new, so drifts in
the machine's load hit both; the table gives each figure's median over the rounds and new/old.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

PROBE = r'''
import importlib.util, json, os, sys, time
tree = sys.argv[1]
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location(  # the backends/ folder is the hybridref.backends package
    "hybridref.backends", os.path.join(tree, "backends", "__init__.py"),
    submodule_search_locations=[os.path.join(tree, "backends")])
import hybridref
backends = importlib.util.module_from_spec(spec)
sys.modules["hybridref.backends"] = backends
spec.loader.exec_module(backends)
import numpy as np
from hybridref.models.char_lm import CharLM
from hybridref.models.mnist_hybrid import MnistHybrid
from hybridref.optim import AdamW
assert hybridref.__file__.startswith(os.path.abspath(tree)), hybridref.__file__
be = backends.get_backend("c")
be.set_threads(int(sys.argv[2]))
out = {}
rng = np.random.default_rng(0)
images, labels = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64)
model = MnistHybrid().to(be)
opt = AdamW(model.params(), lr=1e-3, weight_decay=0.05, clip_norm=1.0)
times = []
for i in range(13):
    t0 = time.perf_counter()
    model.zero_grad()
    loss, probs = be.cross_entropy_forward(model.forward(images), labels)
    model.backward(be.cross_entropy_backward(probs, labels))
    opt.step(be)
    times.append(time.perf_counter() - t0)
out["mnist train step (ms)"] = 1e3 * sorted(times[3:])[5]
for arch in ("transformer", "mamba", "hybrid"):
    lm = CharLM.preset(arch, 65).to(be)
    for ctx in (64, 4096):
        dec = lm.decoder(1, ctx + 64)
        dec.prefill(rng.integers(0, 65, (1, ctx)))
        ids = rng.integers(0, 65, 64)
        per = []
        for t in range(64):
            t0 = time.perf_counter()
            dec.step(ids[t:t + 1])
            per.append(time.perf_counter() - t0)
        out[f"decode {arch} ctx {ctx} (tokens/s)"] = 1.0 / sorted(per[8:])[len(per[8:]) // 2]
print(json.dumps(out))
'''


def probe(tree, threads):
    res = subprocess.run([sys.executable, "-c", PROBE, os.path.abspath(tree), str(threads)], capture_output=True,
                         text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if res.returncode:
        sys.exit(f"{tree}: the probe failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    runs = {"old": [], "new": []}
    for _ in range(a.rounds):
        for side in ("old", "new"):
            runs[side].append(probe(getattr(a, side), a.threads))
    print(f"| measure (median of {a.rounds} interleaved rounds, {a.threads} thread(s)) | old | new | new/old |")
    print("| --- | ---: | ---: | ---: |")
    for key in runs["old"][0]:
        old = statistics.median(r[key] for r in runs["old"])
        new = statistics.median(r[key] for r in runs["new"])
        print(f"| {key} | {old:.1f} | {new:.1f} | {new / old:.3f} |")


if __name__ == "__main__":
    main()

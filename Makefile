# hybridref developer commands. HYBRIDREF_DATA defaults to the shared data beside the checkout.
PYTHON ?= python3
export HYBRIDREF_DATA ?= $(abspath ../shared/data)
BENCH = $(PYTHON) -m pytest benchmarks -o python_files='bench_*.py' --benchmark-only --benchmark-columns=min,median,mean,rounds

.PHONY: install dev test bench mnist clean

install:            ## compile the C kernels (three ISA builds) and install in editable mode
	$(PYTHON) -m pip install -e .

dev:                ## + test tools (pytest, pytest-benchmark, torch CPU as a test oracle)
	$(PYTHON) -m pip install -e '.[dev]'

test: dev
	$(PYTHON) -m pytest -q

bench: dev          ## every op x backend, the peers (numpy/OpenBLAS, torch) and the training step
	$(BENCH)

mnist: install      ## the main job: train the MNIST hybrid on the C backend
	hybridref train mnist --backend c --json

clean:
	rm -rf build *.egg-info hybridref/_hrc_*.so hybridref/_hrc_*.c .pytest_cache .benchmarks

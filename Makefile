# hybridref developer commands. HYBRIDREF_DATA defaults to the shared data beside the checkout.
PYTHON ?= python3
export HYBRIDREF_DATA ?= $(abspath ../shared/data)
BENCH = $(PYTHON) -m pytest benchmarks -o python_files='bench_*.py' --benchmark-only --benchmark-columns=min,median,mean,rounds
FUZZ_CASES ?= 3000
FUZZ_SEED ?= 0
# Python is not built with AddressSanitizer, so its runtime is preloaded; gcc prints the bare name when
# it has none. Leaks are not checked: Python keeps its objects to the end.
ASAN_RUNTIME = $(shell gcc -print-file-name=libasan.so)
SANITIZED = HYBRIDREF_SANITIZE=1 LD_PRELOAD=$(ASAN_RUNTIME) ASAN_OPTIONS=detect_leaks=0

.PHONY: install dev test bench mnist fuzz clean

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

# The sanitized builds go beside the normal ones (hybridref/_hrc_san_*), which stay as they are. A venv
# that has the build requirements (cffi, a setuptools with bdist_wheel) builds without build isolation,
# downloading nothing; a fresh one (setuptools 65 has no bdist_wheel of its own) in an isolated build.
fuzz:               ## the op fuzzer (tests/fuzz_ops.py) on the AddressSanitizer + UBSan builds of the kernels
	@test -e "$(ASAN_RUNTIME)" || { echo "make fuzz: gcc has no AddressSanitizer runtime (libasan)"; exit 1; }
	HYBRIDREF_SANITIZE=1 $(PYTHON) -m pip install -q -e . --no-deps \
		$$($(PYTHON) -c 'import cffi, setuptools.command.bdist_wheel' 2>/dev/null && echo --no-build-isolation)
	$(SANITIZED) $(PYTHON) tests/fuzz_ops.py --cases $(FUZZ_CASES) --seed $(FUZZ_SEED)

clean:
	rm -rf build *.egg-info hybridref/_hrc_*.so hybridref/_hrc_*.c .pytest_cache .benchmarks

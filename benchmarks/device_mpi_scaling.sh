#!/bin/bash
# MPI scaling beyond this machine's 2 cores: run on a lent 16-core machine (the device tool), which has
# Python 3.12 with numpy and click but no network, so what it lacks travels with the command:
#
#   mkdir -p .devcarry && git archive --format=tar.gz -o .devcarry/src.tar.gz HEAD
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 mpich mpi4py cffi pycparser -d .devcarry
#   (device tool) run: bash benchmarks/device_mpi_scaling.sh   carry: [".devcarry"]
#
# It builds the kernels, checks exactness against one process at P = 8 and 16 (the test suite runs 2, 3, 4),
# then times forward + backward of the MMMA stack on one 131,072-token sequence over 1 ... 16 processes
# (both scan variants) and, for comparison, one process with 16 OpenMP threads.
set -u
T0=$(date +%s)
mkdir -p /tmp/src && tar xzf .devcarry/src.tar.gz -C /tmp/src
python3 -m pip install -q --no-index --no-deps .devcarry/*.whl
cd /tmp/src
(lscpu | head -20; nproc; free -g; python3 --version; gcc --version | head -1) 2>&1
python3 csrc/build_ffi.py > $OUT/build.log 2>&1 || { echo BUILD FAILED; tail -30 $OUT/build.log; exit 1; }
ln -sf ../backends hybridref/backends
export PYTHONPATH=/tmp/src HYBRIDREF_DATA=/nonexistent
HR="from hybridref.cli import main; main()"
python3 -c "$HR" info > $OUT/info.txt 2>&1; head -20 $OUT/info.txt
echo "build done at $(( $(date +%s) - T0 )) s"
MPX=$(dirname $(python3 -c "import sys; print(sys.executable)"))/mpiexec
for P in 8 16; do
  timeout 240 $MPX -n $P python3 tests/mpi_check.py ops model --local c > $OUT/check_$P.log 2>&1; echo "mpi_check ops model P=$P rc=$?"
done
timeout 240 $MPX -n 8 python3 tests/mpi_check.py ops model --local c --scan exscan > $OUT/check_8_exscan.log 2>&1
echo "mpi_check exscan P=8 rc=$?"
timeout 300 python3 -c "$HR" bench mpi --procs 1,2,4,8,16 --tokens 131072 --steps 3 --json | tee $OUT/bench_pipeline.jsonl
timeout 150 python3 -c "$HR" bench mpi --procs 2,4,8,16 --tokens 131072 --steps 3 --scan exscan --json | tee $OUT/bench_exscan.jsonl
timeout 100 python3 -c "$HR" bench mpi --procs 1 --threads 16 --tokens 131072 --steps 3 --json | tee $OUT/bench_threads16.jsonl
echo "all done at $(( $(date +%s) - T0 )) s"

"""hybridref: attention/SSM hybrid sequence models, a Python package (NumPy reference backend)
with a C extension of hand-written SIMD + OpenMP kernels.

The top-level `backends/` directory is the `hybridref.backends` subpackage (the
backend registry and its built-in backends). The C kernels in `csrc/` are built
by cffi in out-of-line API mode, once per ISA level (see csrc/build_ffi.py).
"""
import os

from setuptools import find_packages, setup

ISAS = ("scalar", "avx2", "avx512")
# Every package under hybridref/ and backends/ (which is hybridref.backends), found rather than listed, so
# that a new subpackage is never left out of the wheel.
PACKAGES = ["hybridref", *(f"hybridref.{p}" for p in find_packages("hybridref")),
            "hybridref.backends", *(f"hybridref.backends.{p}" for p in find_packages("backends"))]
# HYBRIDREF_SANITIZE=1: also the AddressSanitizer + UBSan builds, hybridref._hrc_san_<isa> (csrc/build_ffi.py)
SANITIZED = [f"csrc/build_ffi.py:ffi_san_{isa}" for isa in ISAS] if os.environ.get("HYBRIDREF_SANITIZE") == "1" else []

setup(
    name="hybridref",
    version="0.1.0",
    description="Attention / state-space hybrid sequence models: a Python package with a C extension of "
                "hand-written kernels",
    python_requires=">=3.9",
    packages=PACKAGES,
    package_dir={"hybridref.backends": "backends"},
    setup_requires=["cffi>=1.15"],
    cffi_modules=[f"csrc/build_ffi.py:ffi_{isa}" for isa in ISAS] + SANITIZED,
    install_requires=["cffi>=1.15", "numpy>=1.22", "click>=8.0", "safetensors>=0.4"],
    extras_require={
        "dev": ["pytest>=7", "pytest-benchmark>=4", "torch==2.13.0", "transformers>=4.40", "tokenizers", "mpi4py>=3.1",
                "mpich", "matplotlib>=3.5", "build"],
        "tokenizers": ["tokenizers"],  # text prompts for models converted from Hugging Face
        "mpi": ["mpi4py>=3.1", "mpich"],
        "plots": ["matplotlib>=3.5"],  # --plot of the training commands, the experiments' figures
    },
    entry_points={"console_scripts": ["hybridref=hybridref.cli:main"]},
    zip_safe=False,
)

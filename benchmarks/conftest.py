"""Benchmarks reuse the PyTorch reference models of the tests (tests/torch_ref/) as peers."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

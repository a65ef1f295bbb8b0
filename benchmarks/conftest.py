"""Benchmarks reuse the PyTorch reference model of the tests (tests/torch_reference.py) as a peer."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "tests"))

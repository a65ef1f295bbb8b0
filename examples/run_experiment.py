#!/usr/bin/env python3
"""Run a measured experiment — the same click command as `hybridref experiment`. Examples:

    python examples/run_experiment.py scaling --quick
    python examples/run_experiment.py scaling --threads 1 --out docs/experiments/scaling
    HYBRIDREF_DATA=../shared/data python examples/run_experiment.py architectures --resume
"""
from hybridref.cli import experiment

if __name__ == "__main__":
    experiment()

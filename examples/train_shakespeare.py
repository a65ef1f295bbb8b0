#!/usr/bin/env python3
"""Train a character LM on Tiny Shakespeare — the same click command as `hybridref train shakespeare`,
then sample from it with `hybridref generate`. Example:

    HYBRIDREF_DATA=../shared/data python examples/train_shakespeare.py --arch hybrid --backend c \
        --time-budget 10m --checkpoint runs/hybrid.safetensors --json
    hybridref generate --checkpoint runs/hybrid.safetensors --prompt "ROMEO:" --max-new-tokens 500
"""
from hybridref.cli import shakespeare

if __name__ == "__main__":
    shakespeare()

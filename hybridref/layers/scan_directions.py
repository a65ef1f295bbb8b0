"""The scan directions of a non-causal Mamba over image patches (Vision Mamba, VMamba): in which order
each of a mixer's scans reads the tokens, and the glue that puts a sequence into that order and back.

    directions = 1   Mamba: one scan, first token to last (causal; the only one that decodes).
    directions = 2   Vision Mamba (Zhu et al. 2024, Vim's bimamba "v2"): the tokens forward and
                     backward in time.
    directions = 4   VMamba's cross scan (Liu et al. 2024, CrossScan/CrossMerge): the tokens are the
                     cells of an H×W patch grid stored row-major, read row-major, column-major, and
                     both of those backwards (VMamba's order of its K = 4 scans).

A direction transposes the grid (column-major: token (i, j) of the H×W grid, stored at i·W + j, is
read at step j·H + i) and/or reverses time. Both are permutations of the positions, so putting a
sequence into a direction's order (`to_scan`) and back (`from_scan`) are each other's inverse and
each other's adjoint: the gradient of `to_scan` is `from_scan` and the other way round. They are
copies (NumPy glue, as the layer code's other reshapes), not arithmetic.

Reversal stays within a process's slice of the sequence: a backward-in-time scan runs the ordinary
conv and scan on each process's slice flipped, on the backend's `time_reversed()`, which passes the
conv halo and the scan state from later to earlier processes (backends/mpi/sequence.py). A
transposition moves tokens across the whole sequence, so it needs every process to hold whole
sequences (`be.holds_whole_sequences`): the MPI backend's sequence mode refuses it.
"""
import math
from typing import NamedTuple

import numpy as np


class Direction(NamedTuple):
    name: str  # names its parameters in a model: scan_<name>.conv_weight, ... (the first is the mixer's own)
    transpose: bool  # read the patch grid column-major
    reverse: bool  # read backward in time


FORWARD = Direction("forward", False, False)
DIRECTIONS = {
    1: (FORWARD,),
    2: (FORWARD, Direction("reversed", False, True)),
    4: (FORWARD, Direction("columns", True, False), Direction("reversed", False, True),
        Direction("columns_reversed", True, True)),
}


def scan_directions(directions, who="mamba"):
    """The Directions of a mixer with `directions` scans (1, 2 or 4)."""
    if directions not in DIRECTIONS or isinstance(directions, bool):
        raise ValueError(f"{who}: directions must be 1 (causal), 2 (Vision Mamba: forward and backward) or 4 "
                         f"(VMamba: row- and column-major, each both ways), got {directions!r}")
    return DIRECTIONS[directions]


def check_grid(grid, directions, who="mamba"):
    """The grid option: None (a square, inferred from T) or (height, width), only with directions=4."""
    if grid is None:
        return None
    if directions != 4:
        raise ValueError(f"{who}: the grid option is read only by the cross scan (directions=4); "
                         f"drop it for directions={directions}")
    if (not isinstance(grid, (tuple, list)) or len(grid) != 2
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in grid)):
        raise ValueError(f"{who}: grid must be (height, width), two positive ints, got {grid!r}")
    return int(grid[0]), int(grid[1])


def patch_grid(T, grid, who="mamba"):
    """(H, W) of the T tokens: `grid`, which must hold T cells, or the square of side √T."""
    if grid is not None:
        if grid[0] * grid[1] != T:
            raise ValueError(f"{who}: the cross scan's grid {grid[0]}x{grid[1]} holds {grid[0] * grid[1]} tokens, "
                             f"but the sequence has {T}; give grid=(height, width) with height·width = T")
        return grid
    side = math.isqrt(T)
    if side * side != T:
        raise ValueError(f"{who}: the cross scan (directions=4) reads the tokens as a patch grid, but {T} tokens "
                         f"are not a square grid; give its shape as the option grid=(height, width)")
    return side, side


def _transpose_grid(x, rows, cols):
    """x (B, rows·cols, C), a rows×cols grid stored row-major -> the same grid stored column-major."""
    B, _, C = x.shape
    return x.reshape(B, rows, cols, C).transpose(0, 2, 1, 3).reshape(B, rows * cols, C)


def to_scan(x, direction, grid):
    """x (B,T,C) in stored (row-major) order -> (B,T,C) in the order `direction` reads it (contiguous).
    grid (H, W) is needed only by a transposing direction."""
    if direction.transpose:
        x = _transpose_grid(x, *grid)
    if direction.reverse:
        x = x[:, ::-1]
    return np.ascontiguousarray(x) if direction.transpose or direction.reverse else x


def from_scan(y, direction, grid):
    """The inverse (and adjoint) of to_scan: y (B,T,C) in the direction's order -> stored order."""
    if direction.reverse:
        y = y[:, ::-1]
    if direction.transpose:
        y = _transpose_grid(y, grid[1], grid[0])  # the column-major grid is a W×H grid stored row-major
    return np.ascontiguousarray(y) if direction.transpose or direction.reverse else y

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
copies, not arithmetic.

On a backend whose processes hold slices of the sequence (the MPI backend's sequence mode) a
transposition is `be.permute_positions` (an all-to-all there, backends/mpi/permute.py), after which
each process holds its slice of the column-major sequence, and reversal stays within each slice: a
backward-in-time scan runs the ordinary conv and scan on each process's slice flipped, on the
backend's `time_reversed()`, which passes the conv halo and the scan state from later to earlier
processes (backends/mpi/sequence.py). Both are exact: the split computes what one process does.
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
    if isinstance(directions, bool) or not isinstance(directions, (int, np.integer)) or directions not in DIRECTIONS:
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


def column_major(H, W):
    """(T,) the stored position each step of a column-major scan of an H×W grid reads: step j·H + i
    reads cell (i, j), stored row-major at i·W + j. column_major(W, H) is its inverse."""
    return np.arange(H * W).reshape(H, W).T.ravel()


def to_scan(be, x, direction, grid):
    """x (B,T,C) in stored (row-major) order -> (B,T,C) in the order `direction` reads it, on backend
    be (whose processes may hold slices of T). grid (H, W) is needed only by a transposing direction."""
    if direction.transpose:
        x = be.permute_positions(x, column_major(*grid))
    if direction.reverse:
        x = np.ascontiguousarray(x[:, ::-1])
    return x


def from_scan(be, y, direction, grid):
    """The inverse (and adjoint) of to_scan: y (B,T,C) in the direction's order -> stored order."""
    if direction.reverse:
        y = np.ascontiguousarray(y[:, ::-1])
    if direction.transpose:
        y = be.permute_positions(y, column_major(grid[1], grid[0]))
    return y

"""The program layout shared by our channels_last Triton kernels (imported only with Triton).

Grid (column blocks, rows or bands of rows, batch); a program covers BLOCK_P neighbouring pixels
of a row with all their channels (padded to a power of two), so that each load or store of a
channels_last tensor is one contiguous run of memory. Where the channel count is that power of two
(EVEN, every ECMNet width) the masks vary only along the pixels, so Triton can load and store
whole 16-byte vectors: a per-element channel mask makes every access a 2-byte scalar one, and
those instructions, not memory, were what limited the first versions of these kernels.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def row_segment(C, BP: tl.constexpr, BC: tl.constexpr):
    """(row or band index, batch index, pixel columns p, channels c, channel mask) of this program."""
    pw = tl.program_id(0)
    r = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    p = pw * BP + tl.arange(0, BP)
    c = tl.arange(0, BC)
    return r, b, p, c, c < C


@triton.jit
def tile_mask(pixel_ok, cm, EVEN: tl.constexpr):
    """The (pixels x channels) mask of a row-segment access: per pixel only where EVEN."""
    if EVEN:
        return pixel_ok[:, None]
    else:
        return pixel_ok[:, None] & cm[None, :]


def row_segment_blocks(channels: int, elements: int):
    """(BLOCK_P, BLOCK_C) for a program of about `elements` values of a tensor with these channels."""
    bc = max(16, triton.next_power_of_2(channels))
    return max(16, elements // bc), bc


def is_even(channels: int, block: int) -> bool:
    """Whether a channel block needs no channel mask."""
    return channels == block

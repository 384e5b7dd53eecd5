"""glibc ``malloc`` settings for a process that moves large tensors (training, torch eager on CPU).

By default glibc serves every allocation above a threshold (128 KiB, raised dynamically
to at most 32 MiB) with fresh ``mmap`` pages and returns them to the kernel on ``free``.
PyTorch on CPU allocates and frees activations of megabytes to hundreds of megabytes in
every layer, so each training step and each eager forward pays page faults on memory it
had a moment ago. Measured on the 2-core reference machine (docs/experiments/malloc.md),
glibc's defaults cost 8.2 s of system time in an 11.6 s training step at batch 32; with
the settings below a step takes 7.5 s (1.55x), and torch eager inference in a fresh
process runs 1.40x faster.

:func:`keep_freed_memory` raises the mmap and trim thresholds so freed blocks stay in the
heap and are reused. The cost: the process keeps its peak memory instead of handing it
back between steps. The CLI applies it in every command; Python API users call it once at
start-up. Where the C library is not glibc it changes nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import sys

__all__ = ["keep_freed_memory", "malloc_settings"]

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest value mallopt's int argument can carry: allocations up to 2 GiB come from the
# heap, and up to 2 GiB of free heap top is kept instead of trimmed.
_THRESHOLD = 2**31 - 1

_applied = False


def _is_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Keep memory freed by tensors inside the process for reuse; True if applied (glibc only).

    Idempotent. Affects allocations made after the call, so call it before building models.
    """
    global _applied
    if _applied:
        return True
    if not _is_glibc():
        log.debug("malloc tuning skipped: needs Linux with glibc (this is %s %s)", sys.platform, platform.libc_ver())
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        log.debug("malloc tuning skipped: cannot load mallopt from %s", name)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting either threshold also turns off glibc's dynamic threshold.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    return _applied


def malloc_settings() -> str:
    """One line for benchmark reports: which malloc behaviour this process runs with."""
    if _applied:
        return "glibc, freed memory kept in the process (fractalad_edge.allocator.keep_freed_memory)"
    if _is_glibc():
        return "glibc defaults"
    return f"{platform.libc_ver()[0] or 'platform'} defaults"

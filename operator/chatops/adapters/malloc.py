"""glibc's allocator, told to give freed memory back to the operating system.

By default glibc gives every thread that allocates its own arena (up to 8 per CPU), and
keeps what Python frees in them for reuse: after a burst of looks on the 16 look threads
the operator's RSS stays near its peak. Two arenas (`configure`, before the threads
start) and `malloc_trim(0)` every `TRIM_EVERY` seconds (`trim`, from an operator-wide
task) return it; see bench/memory_results.md for what each does. On a C library other
than glibc (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger("chatops")

ARENAS = 2
TRIM_EVERY = 30.0
"""Seconds between two trims: a trim costs a few milliseconds of the event loop."""
_M_ARENA_MAX = -8  # glibc's malloc.h


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library it runs on
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None
    return libc


_glibc = _libc()


def configure(arenas: int = ARENAS) -> bool:
    """At most `arenas` malloc arenas for the threads created from now on; False where
    there is no glibc."""
    if _glibc is None:
        return False
    done = bool(_glibc.mallopt(_M_ARENA_MAX, arenas))
    if not done:
        log.warning("mallopt(M_ARENA_MAX, %d) refused", arenas)
    return done


def trim() -> bool:
    """Hand the free memory at the top of every arena back to the OS; True when some
    was."""
    return _glibc is not None and bool(_glibc.malloc_trim(0))

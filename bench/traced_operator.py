"""`chatops run`, unchanged, with tracemalloc on from its first import.

    CHATOPS_BENCH_TRACE=/tmp/snaps python bench/traced_operator.py run -n NS

Every SIGUSR1 writes a tracemalloc snapshot (after a full garbage collection) to
`$CHATOPS_BENCH_TRACE/snapshot-<n>.pickle`, n counting from 0, renamed into place once
written so a reader never sees half of one. memory_bench.py diffs them. tracemalloc
costs memory of its own (about as much again as what it traces): RSS is measured on an
operator without it.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

FRAMES = int(os.environ.get("CHATOPS_BENCH_TRACE_FRAMES", "1"))
tracemalloc.start(FRAMES)
_taken = 0


def _snapshot(*_: Any) -> None:
    global _taken
    folder = Path(os.environ["CHATOPS_BENCH_TRACE"])
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    path = folder / f"snapshot-{_taken}.pickle"
    partial = path.with_suffix(".part")
    snapshot.dump(str(partial))
    partial.rename(path)
    _taken += 1


signal.signal(signal.SIGUSR1, _snapshot)

from chatops.cli import main  # noqa: E402 - after tracemalloc started, to trace the imports

if __name__ == "__main__":
    sys.exit(main())

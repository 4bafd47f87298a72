"""Size-bounded slot logs: ``<state_dir>/slots/NAME.log`` plus ``NAME.log.1`` … ``NAME.log.N``.

A process slot writes straight into its log file (its stdout and stderr are the file, opened with
``O_APPEND``), so the child keeps running — and keeps its output — when the bridge dies; no pipe
through the bridge. Rotation is therefore *copy-truncate*, like logrotate's: the file is copied to
``.1`` (older ones shift up, the oldest goes) and truncated in place; the child's next write lands at
the new end of file because of ``O_APPEND``. Lines written between the copy and the truncate are lost
(a window of one copy). Checked at every start and at every slot poll, so a log exceeds
``log_max_bytes`` by at most what the slot writes between two polls.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate ``path`` when it is larger than ``max_bytes``; True when it did. Blocking: run in a thread."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for n in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{n}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
    shutil.copyfile(path, path.with_name(f"{path.name}.1"))
    with open(path, "r+b") as fh:
        fh.truncate(0)
    return True

"""CSV input and output shared by the benchmark scripts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing the header when the file is new or empty.

    The columns are those of the first row; an existing file must have been written with the same.
    """
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of the CSV at ``path`` as dicts; none when the file does not exist yet."""
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))

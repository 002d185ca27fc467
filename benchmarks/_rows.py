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


def as_numbers(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """``rows`` with every value that parses as a number turned into a float."""

    def num(v: str) -> Any:
        try:
            return float(v)
        except ValueError:
            return v

    return [{k: num(v) for k, v in r.items()} for r in rows]


def write_rows(rows, path: Path, fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Write the dicts that the iterable ``rows`` yields to a new CSV at ``path`` as each
    arrives (flushed, so an interrupted run keeps what it finished), print each, and return them
    all. The header is ``fields`` or the first row's keys.
    """
    done, writer = [], None
    with Path(path).open("w", newline="") as f:
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(fields or row))
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            print(row, flush=True)
            done.append(row)
    return done

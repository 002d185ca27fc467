"""Output plans: where every input's results go, checked before anything is computed.

A batch command (``selfdeblur deblur``, ``selfdeblur refine``) first maps each input to its output
files and its JSON sidecar, then refuses the whole plan, before any work, when

- an output would be one of the inputs (an image or the kernel file), or the same file twice;
- two inputs would write the same output (same-stem inputs such as ``a.tif`` and ``a.png``, or
  ``d1/x.tif`` and ``d2/x.tif`` into one folder): they are refused, not renamed, so a name
  always says which input it came from; run them into different ``--out`` folders;
- an output exists and this tool did not write it, unless ``overwrite`` is given;
- the output folder cannot be written.

Files this tool wrote are recognised by their sidecar: a JSON object with ``"package":
"napari-selfdeblur"`` that lists them under ``"outputs"``. An input whose outputs exist is
skipped only when its sidecar records the same input file (size in bytes and modification time
in ns) and the same request (settings, seed, kernel); otherwise the outputs are *stale*: the
input is reported and not run unless ``overwrite`` is given. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .provenance import PACKAGE


@dataclass(frozen=True)
class Task:
    """One input of a plan: its outputs and sidecar, and what to do with it.

    ``action`` is ``"run"``, ``"skip"`` (up to date) or ``"stale"`` (outputs from another input
    or other settings; not run without ``overwrite``); ``reason`` says why, for the user.
    """

    source: Path
    outputs: tuple[Path, ...]
    sidecar: Path
    action: str
    reason: str = ""

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file the task writes, sidecar last."""
        return (*self.outputs, self.sidecar)


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies an input file's content cheaply: its size and modification time."""
    st = Path(path).stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_sidecar(path: str | os.PathLike) -> dict[str, Any] | None:
    """The sidecar at ``path`` if it is one of this tool's, else None (missing or foreign)."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("package") == PACKAGE else None


def sidecar_fields(task: Task, request: dict[str, Any]) -> dict[str, Any]:
    """The fields a sidecar needs so that a later plan recognises and checks its outputs."""
    return {
        "input": str(task.source),
        "source": fingerprint(task.source),
        "request": request,
        "outputs": [p.name for p in task.outputs],
    }


def make_plan(
    inputs: Sequence[Path],
    out_dir: Path,
    names: Sequence[str],
    sidecar_name: str,
    *,
    request: dict[str, Any],
    protected: Sequence[Path] = (),
    overwrite: bool = False,
) -> list[Task]:
    """Check and return the plan of a batch; raise :class:`InvalidInputError` if it is unsafe.

    ``names`` are output name patterns and ``sidecar_name`` the sidecar's, with ``{stem}``
    standing for the input's file name without its suffix (``"{stem}_latent.tif"``).
    ``protected`` files (a kernel read by every input) are never written either. ``request``
    is what must match for an existing result to count as up to date.
    """
    check_writable(out_dir)
    tasks = [
        (
            Path(src),
            tuple(out_dir / n.format(stem=Path(src).stem) for n in names),
            out_dir / sidecar_name.format(stem=Path(src).stem),
        )
        for src in inputs
    ]
    _check_collisions(tasks, protected)
    plan = [_decide(src, outs, side, request, overwrite) for src, outs, side in tasks]
    for task in plan:
        if task.action == "run":
            sweep_parts(task.files)
    return plan


def path_key(path: str | os.PathLike) -> str:
    """A path's identity for comparisons: absolute, links resolved, case as the OS compares."""
    return os.path.normcase(os.path.realpath(path))


def _check_collisions(tasks, protected: Sequence[Path]) -> None:
    readers: dict[str, Path] = {}
    for src, _, _ in tasks:
        if path_key(src) in readers:
            raise InvalidInputError(f"{src} is listed more than once")
        readers[path_key(src)] = src
    for p in protected:
        readers.setdefault(path_key(p), p)
    writers: dict[str, Path] = {}
    for src, outs, side in tasks:
        for out in (*outs, side):
            key = path_key(out)
            if key in readers:
                raise InvalidInputError(
                    f"output {out} for {src} would replace the input {readers[key]}; "
                    "choose another --out folder"
                )
            if key in writers and writers[key] != src:
                raise InvalidInputError(
                    f"{writers[key]} and {src} would both write {out}; inputs with the same "
                    "name need different --out folders"
                )
            writers[key] = src


def _decide(src: Path, outs: tuple[Path, ...], side: Path, request, overwrite: bool) -> Task:
    existing = [p for p in (*outs, side) if p.exists()]
    if not existing:
        return Task(src, outs, side, "run")
    meta = claim((*outs, side), side, overwrite=overwrite)
    if overwrite:
        return Task(src, outs, side, "run", "replacing earlier outputs")
    if meta.get("complete") is False:  # a run killed while writing: redo it
        return Task(src, outs, side, "run", "completing an interrupted run")
    changed = _changes(meta, src, request)
    if not changed and len(existing) == len(outs) + 1:
        return Task(src, outs, side, "skip", "outputs are up to date")
    why = f"changed: {', '.join(changed)}" if changed else "some outputs are missing"
    return Task(src, outs, side, "stale", f"earlier outputs are stale ({why})")


def claim(files: Sequence[Path], side: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Check that every existing file of ``files`` was written by this tool; its sidecar.

    A file counts as ours when the sidecar ``side`` is ours and lists it (sidecars written
    before ``"outputs"`` existed vouch for every expected name). Raises
    :class:`InvalidInputError` naming the first file that is not ours, unless ``overwrite``.
    """
    meta = read_sidecar(side) or {}
    if meta:
        ours = set(meta.get("outputs", [p.name for p in files])) | {side.name}
    else:
        ours = set()
    foreign = [p for p in files if p.exists() and (p.name not in ours or p.is_dir())]
    if foreign and not overwrite:
        raise InvalidInputError(
            f"{foreign[0]} exists and was not written by this tool; use --overwrite to replace "
            "it, or choose another --out folder"
        )
    return meta


def write_task(task: Task, arrays: Sequence[Any], meta: dict[str, Any]) -> None:
    """Write a task's outputs (TIFF, one array each) and its sidecar, each atomically.

    The sidecar is written first marked ``"complete": false`` and rewritten complete last, so
    a run killed in between is recognised as this tool's and redone by the next plan.
    """
    from .fileio import write_json, write_tiff

    write_json(task.sidecar, {**meta, "complete": False})
    for path, arr in zip(task.outputs, arrays, strict=True):
        write_tiff(path, arr)
    write_json(task.sidecar, {**meta, "complete": True})


def _changes(meta: dict[str, Any], src: Path, request: dict[str, Any]) -> list[str]:
    """What differs between a sidecar and this run: 'input' and/or the request's keys."""
    out = []
    try:
        if meta.get("source") != fingerprint(src):
            out.append("input")
    except OSError:
        out.append("input")
    before = meta.get("request")
    if not isinstance(before, dict):
        return [*out, "settings (not recorded)"]
    request = json.loads(json.dumps(request, default=str))  # as the sidecar stores it
    keys = sorted(set(before) | set(request))
    return out + [k for k in keys if before.get(k) != request.get(k)]


def check_writable(out_dir: Path) -> None:
    """Raise if ``out_dir`` is not a folder that can be written (or created); create nothing."""
    probe = Path(out_dir)
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe == Path(out_dir) and not probe.is_dir():
        raise InvalidInputError(f"--out {out_dir} exists and is not a folder")
    if not probe.is_dir():
        raise InvalidInputError(f"cannot create --out {out_dir}: {probe} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".selfdeblur-probe-", dir=probe)
    except OSError as exc:
        raise InvalidInputError(f"cannot write to {probe}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(tmp)


def sweep_parts(files: Sequence[Path]) -> None:
    """Remove half-written temporary files left beside ``files`` by a killed run."""
    for target in files:
        if not target.parent.is_dir():
            continue
        for part in target.parent.glob(f".{target.name}.*.part"):
            with contextlib.suppress(OSError):
                part.unlink()

"""Generated bad inputs across the CLI and the API (issue 16).

Each CLI case must end with a non-zero exit, a one-line message that names the problem, no
traceback and no file left behind; each API case must raise the package's own error with a
one-line message. Every case fails before any optimisation, so the suite is fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_selfdeblur import cli, deblur, deblur_stack, refine
from napari_selfdeblur.errors import SelfDeblurError

GOOD = np.random.default_rng(0).random((32, 32)).astype(np.float32)

# Files: name -> writer(path). Each is an input that cannot be deblurred.
BAD_FILES = {
    "empty.tif": lambda p: p.write_bytes(b""),
    "text.tif": lambda p: p.write_text("not an image"),
    "truncated.tif": lambda p: p.write_bytes(_tiff_bytes(GOOD)[:200]),
    "garbage.png": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
    "garbage.jpg": lambda p: p.write_bytes(b"\xff\xd8\xff" + b"\x01" * 40),
    "unsupported.gif": lambda p: p.write_bytes(b"GIF89a"),
    "notes.txt": lambda p: p.write_text("hello"),
    "bool.tif": lambda p: tifffile.imwrite(p, GOOD > 0.5),
    "complex.tif": lambda p: tifffile.imwrite(p, GOOD.astype(np.complex64)),
    "nan.tif": lambda p: tifffile.imwrite(p, np.where(GOOD > 0.9, np.nan, GOOD)),
    "inf.tif": lambda p: tifffile.imwrite(p, np.where(GOOD > 0.9, np.inf, GOOD)),
    "huge.tif": lambda p: tifffile.imwrite(p, GOOD.astype(np.float64) * 1.7e308),
    "constant.tif": lambda p: tifffile.imwrite(p, np.full((32, 32), 7, np.uint16)),
    "one_pixel.tif": lambda p: tifffile.imwrite(p, np.ones((1, 1), np.float32)),
    "two_pixels.tif": lambda p: tifffile.imwrite(p, np.eye(2, dtype=np.float32)),
    "line.tif": lambda p: tifffile.imwrite(p, GOOD[:1]),
    "two_channels.tif": lambda p: tifffile.imwrite(p, np.stack([GOOD, GOOD], -1)),
    "tiny_for_kernel.tif": lambda p: tifffile.imwrite(p, GOOD[:4, :4]),
    "two_series.tif": lambda p: _two_series(p),
    "folder.tif": lambda p: p.mkdir(),
}
MISSING = "missing.tif"


def _tiff_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def _two_series(p: Path) -> None:
    with tifffile.TiffWriter(p) as tif:
        tif.write(GOOD)
        tif.write(np.zeros((4, 4, 3), np.uint8))


BAD_KERNEL_SIZES = [
    "0",
    "-1",
    "2",
    "4x4",
    "abc",
    "",
    " ",
    "\uff19",
    "1e3",
    "31x",
    "x31",
    "9x9x9",
    "3.5",
    "99999",
    "0x0",
    "-5x5",
    "5x-5",
    "nan",
    "auto7",
    "７x7",
]
BAD_OPTIONS = [
    ["--seed", "-1"],
    ["--seed", "99999999999999999999"],
    ["--seed", "1.5"],
    ["--seed", "abc"],
    ["--preset", "fastest"],
    ["--preset", ""],
    ["--preset", "PAPER"],
    ["--iterations", "0"],
    ["--iterations", "-5"],
    ["--iterations", "abc"],
    ["--restarts", "0"],
    ["--restarts", "-1"],
    ["--restarts", "x"],
    ["--device", "gpu"],
    ["--device", "tpu"],
    ["--device", ""],
    ["--device", "cuda:-1"],
    ["--batch", "0"],
    ["--init", "zeros"],
    ["--max-pixels", "ten"],
]
BAD_KERNEL_FILES = {
    "k_empty.tif": lambda p: p.write_bytes(b""),
    "k_nan.tif": lambda p: tifffile.imwrite(p, np.full((5, 5), np.nan, np.float32)),
    "k_zero.tif": lambda p: tifffile.imwrite(p, np.zeros((5, 5), np.float32)),
    "k_negative.tif": lambda p: tifffile.imwrite(p, -np.ones((5, 5), np.float32)),
    "k_complex.tif": lambda p: tifffile.imwrite(p, np.ones((5, 5), np.complex64)),
    "k_bool_empty.tif": lambda p: tifffile.imwrite(p, np.zeros((5, 5), bool)),
    "k_big.tif": lambda p: tifffile.imwrite(p, np.ones((41, 41), np.float32)),
    "k_4d.tif": lambda p: tifffile.imwrite(p, np.ones((2, 2, 5, 5), np.float32)),
    "k_missing.tif": None,
}
BAD_REFINE_OPTIONS = [
    ["--method", "nope"],
    ["--strength", "-1"],
    ["--strength", "nan"],
    ["--strength", "x"],
    ["--iterations", "0"],
    ["--device", "gpu"],
]


def _cases() -> list[tuple[str, list[str]]]:
    """(id, argv with {in}, {good}, {kernel} and {out} placeholders)."""
    cases = [(f"file-{n}", ["deblur", "{in}/" + n, "-k", "5"]) for n in [*BAD_FILES, MISSING]]
    cases += [(f"refine-file-{n}", ["refine", "{in}/" + n, "-K", "{kernel}"]) for n in BAD_FILES]
    cases += [(f"size-{s!r}", ["deblur", "{good}", "-k", s]) for s in BAD_KERNEL_SIZES]
    cases += [(f"opt-{o}", ["deblur", "{good}", "-k", "5", *o]) for o in BAD_OPTIONS]
    cases += [(f"kernel-{n}", ["refine", "{good}", "-K", "{in}/" + n]) for n in BAD_KERNEL_FILES]
    cases += [(f"ropt-{o}", ["refine", "{good}", "-K", "{kernel}", *o]) for o in BAD_REFINE_OPTIONS]
    cases += [
        ("out-is-file", ["deblur", "{good}", "-k", "5", "--out-file"]),
        ("out-under-file", ["deblur", "{good}", "-k", "5", "--out-under-file"]),
        ("analyze-snapshots-0", ["analyze", "spectral", "{good}", "-k", "5", "--snapshots", "0"]),
        (
            "analyze-nan-truth",
            ["analyze", "spectral", "{good}", "-k", "5", "--truth", "{in}/nan.tif"],
        ),
        ("analyze-truth-shape", ["analyze", "seeds", "{good}", "-k", "5", "--truth", "{kernel}"]),
        ("analyze-no-truth", ["analyze", "seeds", "{good}", "-k", "5"]),
        ("analyze-missing", ["analyze", "spectral", "{in}/missing.tif", "-k", "5"]),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("in")
    for name, write in {**BAD_FILES, **BAD_KERNEL_FILES}.items():
        if write is not None:
            write(folder / name)
    tifffile.imwrite(folder / "good.tif", GOOD)
    tifffile.imwrite(folder / "kernel.tif", np.full((5, 5), 1 / 25, np.float32))
    return folder


def test_the_suite_is_large_enough():
    assert len(CASES) + len(API_CASES) >= 100


@pytest.mark.parametrize("argv", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_cli_bad_input(argv, inputs, tmp_path, capsys):
    before = sorted(inputs.rglob("*"))
    out = tmp_path / "out"
    (tmp_path / "file").write_text("a file")
    sub = {
        "{in}": str(inputs),
        "{good}": str(inputs / "good.tif"),
        "{kernel}": str(inputs / "kernel.tif"),
    }
    args = []
    for a in argv:
        for key, value in sub.items():
            a = a.replace(key, value)
        args.append(a)
    if "--out-file" in args:
        args[args.index("--out-file")] = "--out=" + str(tmp_path / "file")
    elif "--out-under-file" in args:
        args[args.index("--out-under-file")] = "--out=" + str(tmp_path / "file" / "sub")
    else:
        args += ["--out", str(out)]
    if args[0] in ("deblur", "refine"):
        args += ["--quiet", "--preset", "quick"] if args[0] == "deblur" else ["--quiet"]
        if "--preset" in argv:  # the case's own preset comes last and wins
            i = argv.index("--preset")
            args += ["--preset", argv[i + 1]]
    try:
        rc = cli.main(args)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "error" in line]
    assert rc not in (0, None), err
    assert "Traceback" not in err
    assert lines and all(len(line) < 400 for line in lines), err
    assert not out.exists() or not any(out.iterdir()), sorted(out.iterdir())
    assert sorted(inputs.rglob("*")) == before


def _kernel(**kw):
    return np.full((5, 5), 1 / 25, **kw)


API_CASES = [
    ("empty", lambda: deblur(np.zeros((0, 0)), 5)),
    ("1-d", lambda: deblur(np.ones(30), 5)),
    ("4-d", lambda: deblur(np.ones((2, 2, 30, 30)), 5)),
    ("bool", lambda: deblur(GOOD > 0.5, 5)),
    ("complex", lambda: deblur(GOOD.astype(complex), 5)),
    ("object", lambda: deblur(GOOD.astype(object), 5)),
    ("strings", lambda: deblur(np.full((30, 30), "a"), 5)),
    ("nan", lambda: deblur(np.where(GOOD > 0.5, np.nan, GOOD), 5)),
    ("huge", lambda: deblur(GOOD.astype(np.float64) * 1e308, 5)),
    ("two-channels", lambda: deblur(np.stack([GOOD, GOOD], -1), 5)),
    ("constant", lambda: deblur(np.ones((30, 30)), 5)),
    ("seed-2**64", lambda: deblur(GOOD, 5, seed=2**64)),
    ("seed-str", lambda: deblur(GOOD, 5, seed="abc")),
    ("seed-float", lambda: deblur(GOOD, 5, seed=1.5)),
    ("seed-negative", lambda: deblur(GOOD, 5, seed=-3)),
    ("seed-bool", lambda: deblur(GOOD, 5, seed=True)),
    ("size-fullwidth", lambda: deblur(GOOD, "\uff19")),
    ("size-even", lambda: deblur(GOOD, 4)),
    ("size-big", lambda: deblur(GOOD, 41)),
    ("size-tuple3", lambda: deblur(GOOD, (5, 5, 5))),
    ("size-float", lambda: deblur(GOOD, 5.5)),
    ("size-none", lambda: deblur(GOOD, None)),
    ("preset", lambda: deblur(GOOD, 5, preset="nope")),
    ("iterations", lambda: deblur(GOOD, 5, iterations=0)),
    ("restarts", lambda: deblur(GOOD, 5, restarts=0)),
    ("device", lambda: deblur(GOOD, 5, device="gpu")),
    ("stack-empty", lambda: deblur_stack([], 5)),
    ("stack-shapes", lambda: deblur_stack([GOOD, GOOD[:20]], 5)),
    ("stack-batch", lambda: deblur_stack([GOOD, GOOD], 5, batch_size=0)),
    ("refine-complex-kernel", lambda: refine(GOOD, _kernel(dtype=complex))),
    ("refine-nan-kernel", lambda: refine(GOOD, np.full((5, 5), np.nan))),
    ("refine-zero-kernel", lambda: refine(GOOD, np.zeros((5, 5)))),
    ("refine-empty-kernel", lambda: refine(GOOD, np.zeros((0, 0)))),
    ("refine-3d-kernel", lambda: refine(GOOD, np.ones((2, 2, 5, 5)))),
    ("refine-tiny-image", lambda: refine(np.eye(2), _kernel())),
    ("refine-kernel-bigger", lambda: refine(GOOD[:4, :4], _kernel())),
    ("refine-method", lambda: refine(GOOD, _kernel(), "nope")),
    ("refine-strength", lambda: refine(GOOD, _kernel(), "wiener", strength=-1.0)),
    ("refine-param", lambda: refine(GOOD, _kernel(), "wiener", bogus=1)),
    ("refine-bool-image", lambda: refine(GOOD > 0.5, _kernel())),
]


@pytest.mark.parametrize("call", [c[1] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input(call):
    with pytest.raises(SelfDeblurError) as info:
        call()
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 400

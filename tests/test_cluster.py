"""Batches on a Dask cluster (``distributed``): same outputs as in-process, failures, resume."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_selfdeblur import cli
from napari_selfdeblur.batch import deblur_many, open_client, parse_scheduler, refine_many
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.sample import blurred_sample

distributed = pytest.importorskip("distributed")


def _inputs(folder: Path, count: int = 4, *, stack: bool = True) -> list[Path]:
    """``count`` tiny blurred images, the last one a 2-plane stack."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img = blurred_sample((32, 32), seed=i).blurry.astype(np.float32)
        if stack and i == count - 1:
            img = np.stack([img, img[::-1].copy()])
        paths.append(folder / f"img{i}.tif")
        tifffile.imwrite(paths[-1], img)
    return paths


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def test_scheduler_option_is_parsed_and_bad_values_are_refused():
    assert parse_scheduler(None) is None
    with pytest.raises(InvalidInputError, match="names no cluster"), open_client(" "):
        pass  # no silent fallback to some cluster
    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("local", threads=1)[1] == max(1, os.cpu_count() or 1)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("tcp://10.0.0.1:8786", None)
    for bad in ("local:0", "local:x", "nonsense"):
        with pytest.raises(InvalidInputError, match="--scheduler"):
            parse_scheduler(bad)


@pytest.mark.slow
def test_local_cluster_outputs_are_bit_identical_to_in_process(tmp_path):
    paths = _inputs(tmp_path / "in")
    common = ["-k", "5", "--preset", "quick", "--threads-per-worker", "1", "--quiet"]
    assert cli.main(["deblur", *map(str, paths), "-o", str(tmp_path / "here"), *common]) == 0
    cluster = ["--scheduler", "local:2", "-o", str(tmp_path / "cl")]
    assert cli.main(["deblur", *map(str, paths), *cluster, *common]) == 0
    for p in paths:
        for name in (f"{p.stem}_latent.tif", f"{p.stem}_kernel.tif"):
            a, b = (
                tifffile.imread(tmp_path / "here" / name),
                tifffile.imread(tmp_path / "cl" / name),
            )
            assert a.shape == b.shape and np.array_equal(a, b), name
        side = json.loads((tmp_path / "cl" / f"{p.stem}.json").read_text())
        assert side["complete"] is True and side["preset"] == "quick"
    assert json.loads((tmp_path / "cl" / "img3.json").read_text())["planes"] == 2


def test_unreachable_scheduler_fails_fast_with_one_line(tmp_path, capsys):
    paths = _inputs(tmp_path / "in", 1, stack=False)
    start = time.monotonic()
    rc = cli.main(
        [
            "deblur",
            str(paths[0]),
            "-k",
            "5",
            "-o",
            str(tmp_path / "out"),
            "--quiet",
            "--scheduler",
            "tcp://127.0.0.1:9",
            "--scheduler-timeout",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and time.monotonic() - start < 30
    assert "cannot reach the scheduler at tcp://127.0.0.1:9" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "img0_latent.tif").exists()


@pytest.mark.slow
def test_a_killed_worker_still_completes_the_batch_or_reports_what_is_missing(tmp_path, client):
    paths = _inputs(tmp_path / "in", 4, stack=False)
    out = tmp_path / "out"
    pids = list(client.run(os.getpid).values())
    killed = []

    def kill_once(outcome) -> None:
        if not killed:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    options = {"preset": "demo", "iterations": 40, "threads": 1}
    first = deblur_many(paths, 5, out=out, client=client, on_outcome=kill_once, **options)
    assert killed and len(first) == 4
    missing = {o.source for o in first if o.status != "done"}
    for o in first:
        assert o.status in ("done", "error")
        assert (out / f"{Path(o.source).stem}_latent.tif").exists() == (o.status == "done")
    second = deblur_many(paths, 5, out=out, client=client, **options)
    assert {o.source for o in second if o.status == "done"} == missing
    assert all(o.status == "skip" for o in second if o.source not in missing)
    assert all((out / f"{p.stem}_latent.tif").exists() for p in paths)


def test_arrays_run_on_the_cluster_as_in_process(client):
    images = [blurred_sample((32, 32), seed=i).blurry for i in range(2)]
    images.append(np.zeros((2, 2)))  # too small: an error for that input only
    here = deblur_many(images, 5, preset="quick", threads=1)
    there = deblur_many(images, 5, preset="quick", threads=1, client=client)
    assert [o.status for o in there] == ["done", "done", "error"] == [o.status for o in here]
    assert "too small" in there[2].message or "pixels" in there[2].message
    for a, b in zip(here[:2], there[:2], strict=True):
        assert np.array_equal(a.value.latent, b.value.latent)
    kernel = here[0].value.kernel
    refined = refine_many(images[:2], kernel, "wiener", client=client)
    assert all(o.status == "done" and o.value.image.shape == (32, 32) for o in refined)


def test_refine_on_a_cluster_writes_sidecars_and_resumes(tmp_path, client, capsys):
    paths = _inputs(tmp_path / "in", 3)
    kernel = tmp_path / "k.tif"
    tifffile.imwrite(kernel, blurred_sample((32, 32)).kernel.astype(np.float32))
    args = ["refine", *map(str, paths), "-K", str(kernel), "-o", str(tmp_path / "out")]
    args += ["--scheduler", client.scheduler.address, "--quiet", "-m", "wiener"]
    assert cli.main(args) == 0
    assert cli.main(args) == 0
    outs = capsys.readouterr().out
    assert outs.count("wrote") == 3 and outs.count("skipped") == 3
    side = json.loads((tmp_path / "out" / "img2_refined.json").read_text())
    assert side["method"] == "wiener" and side["complete"] is True


def _lazy_stack(planes: int, side: int):
    """A dask stack whose planes are made on demand: it never exists whole in memory."""
    import dask
    import dask.array as da

    def plane(i: int) -> np.ndarray:
        return blurred_sample((side, side), seed=i % 3).blurry.astype(np.float64)

    parts = [
        da.from_delayed(dask.delayed(plane)(i), (side, side), dtype=np.float64)
        for i in range(planes)
    ]
    return da.stack(parts), plane


LAZY_PEAK = """
import sys, tracemalloc
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_cluster import _lazy_stack
from napari_selfdeblur._napari.tasks import LayerGeometry, refine_task, run_to_end
from napari_selfdeblur.evaluation.sample import blurred_sample
from napari_selfdeblur.nonblind.api import refine

stack, plane = _lazy_stack(128, 160)  # 26 MB as float64
kernel = blurred_sample((32, 32)).kernel
refine(plane(0), kernel, "wiener")  # imports and first-call caches are not the stack's cost
tracemalloc.start()
((data, kwargs, _),) = run_to_end(refine_task(stack, LayerGeometry.plain("m", 3), kernel, "wiener"))
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
assert not isinstance(data, np.ndarray) and data.shape == stack.shape  # still lazy
assert kwargs["metadata"]["planes_done"] == 128
for i in (0, 127):
    expected = refine(plane(i), kernel, "wiener").image
    np.testing.assert_allclose(np.asarray(data[i]), expected, rtol=1e-6, atol=1e-9)
print(peak, stack.nbytes)
"""


def test_a_lazy_stack_is_refined_plane_by_plane_within_a_fraction_of_its_size():
    """Peak Python memory (tracemalloc) in a fresh process, where nothing else allocates."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", LAZY_PEAK, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak, nbytes = map(int, proc.stdout.split()[-2:])
    assert peak < nbytes / 3, (peak, nbytes)  # loading the stack whole would be 1x


# -- napari tasks: lazy stacks and a cluster -------------------------------------------------------


def _tiny_blind(tiny_config):
    return tiny_config.replace(iterations=4, lr_milestones=(2, 3), ssim_start=2)


@pytest.mark.parametrize("mode", ["per-plane", "refine"])
def test_a_lazy_stack_is_deblurred_plane_by_plane_as_in_memory(tiny_config, mode):
    from napari_selfdeblur._napari.tasks import LayerGeometry, blind_task, run_to_end

    stack, _ = _lazy_stack(3, 40)
    geo, cfg = LayerGeometry.plain("lazy", 3), _tiny_blind(tiny_config)
    options = {"preset": cfg, "stack_mode": mode, "current_plane": 1}
    (lazy, lazy_kw, _), (kernel, _, _) = run_to_end(blind_task(stack, geo, 5, **options))
    (dense, _, _), (dense_kernel, _, _) = run_to_end(
        blind_task(np.asarray(stack), geo, 5, **options)
    )
    assert not isinstance(lazy, np.ndarray) and lazy.shape == stack.shape  # still lazy
    assert Path(lazy_kw["metadata"]["store"]).is_file()
    np.testing.assert_allclose(np.asarray(lazy), dense, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(kernel, dense_kernel, rtol=1e-5, atol=1e-7)
    blind = [r["plane"] for r in lazy_kw["metadata"]["runs"]]
    assert blind == ([0, 1, 2] if mode == "per-plane" else [1])


def test_the_blind_task_hands_a_stack_to_a_cluster_one_task_per_plane(tiny_config, client):
    from napari_selfdeblur._napari.tasks import LayerGeometry, blind_task, run_to_end

    planes = np.stack([blurred_sample((40, 40), seed=s).blurry for s in range(3)])
    geo, cfg = LayerGeometry.plain("stack", 3), _tiny_blind(tiny_config)
    seen = []
    task = blind_task(
        planes, geo, 5, preset=cfg, stack_mode="per-plane", scheduler=client.scheduler.address
    )
    (latent, meta, _), (kernels, _, _) = run_to_end(task, seen.append)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as Dask's workers run torch (one thread per worker process)
    try:
        (local, _, _), (local_kernels, _, _) = run_to_end(
            blind_task(planes, geo, 5, preset=cfg, stack_mode="per-plane")
        )
    finally:
        torch.set_num_threads(threads)
    # Per-plane progress: 1, 2, 3 planes done (in completion order).
    assert [p.plane for p in seen if p.stage == "blind (cluster)"] == [1, 2, 3]
    assert [r["plane"] for r in meta["metadata"]["runs"]] == [0, 1, 2]
    np.testing.assert_array_equal(latent, local)
    np.testing.assert_array_equal(kernels, local_kernels)


def test_the_refine_task_runs_planes_on_a_cluster_and_reports_a_bad_address(client):
    from napari_selfdeblur._napari.tasks import LayerGeometry, refine_task, run_to_end

    planes = np.stack([blurred_sample((40, 40), seed=s).blurry for s in range(3)])
    kernel = blurred_sample((40, 40)).kernel
    geo = LayerGeometry.plain("stack", 3)
    task = refine_task(planes, geo, kernel, "wiener", scheduler=client.scheduler.address)
    ((remote, kw, _),) = run_to_end(task)
    ((local, local_kw, _),) = run_to_end(refine_task(planes, geo, kernel, "wiener"))
    np.testing.assert_allclose(remote, local, rtol=1e-6, atol=1e-9)
    assert len(kw["metadata"]["strengths"]) == 3 and kw["metadata"]["planes_done"] == 3
    assert kw["metadata"]["noise_sigmas"] == pytest.approx(local_kw["metadata"]["noise_sigmas"])
    with pytest.raises(InvalidInputError, match="local or local:N"):
        refine_task(planes, geo, kernel, "wiener", scheduler="local:0")  # refused at once
    for none in ("", "none"):  # in-process, as for --scheduler
        ((same, _, _),) = run_to_end(refine_task(planes, geo, kernel, "wiener", scheduler=none))
        np.testing.assert_array_equal(same, local)
    task = refine_task(planes, geo, kernel, "wiener", scheduler="tcp://127.0.0.1:9")
    with pytest.raises(InvalidInputError, match="cannot reach the scheduler"):
        run_to_end(task)


def test_stream_keeps_a_bounded_window_in_flight_and_stops_when_asked(client):
    from napari_selfdeblur.batch import stream

    pulled, outcomes = [], []

    def items():
        for i in range(12):
            pulled.append(i)
            yield i, (i,)

    def first_seen(outcome):
        outcomes.append((outcome.source, len(pulled)))

    stream(items(), abs, client=client, window=3, on_outcome=first_seen)
    assert sorted(s for s, _ in outcomes) == list(range(12))
    assert outcomes[0][1] <= 4  # read a window ahead of the workers, not all at once
    done = []
    stream(
        ((i, (i,)) for i in range(12)),
        abs,
        client=client,
        window=2,
        should_stop=lambda: len(done) >= 3,
        on_outcome=done.append,
    )
    assert 3 <= len(done) < 12

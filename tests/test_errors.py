"""Every bad input gets a clear error naming the problem, raised before any work starts."""

import numpy as np
import pytest
import torch

from napari_selfdeblur import (
    DeviceError,
    InvalidInputError,
    OutOfMemoryError,
    deblur,
    deblur_stack,
)
from napari_selfdeblur.config import (
    DeblurConfig,
    ImageNetConfig,
    KernelNetConfig,
    MapConfig,
    get_preset,
)
from napari_selfdeblur.engine.device import resolve_device
from napari_selfdeblur.imaging.noise import estimate_noise_sigma


@pytest.fixture
def img(scene):
    return scene.astype(np.float32)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 10)), "empty"),
        (np.zeros(40), "1 dimensions"),
        (np.zeros((3, 40, 40)), "3 dimensions"),
        (np.zeros((2, 2, 40, 40)), "4 dimensions"),
        (np.full((40, 40), 0.5), "constant"),
        (np.array([["a"] * 40] * 40), "dtype"),
    ],
)
def test_bad_images(bad, message, tiny_config):
    with pytest.raises(InvalidInputError, match=message):
        deblur(bad, 5, preset=tiny_config, device="cpu")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(img, value, tiny_config):
    img = img.copy()
    img[3, 4] = value
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        deblur(img, 5, preset=tiny_config, device="cpu")


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (4, "odd"),
        (0, "positive"),
        (-5, "positive"),
        ("41", "larger than the image"),
        ("5x41", "larger than the image"),
        ("nine", "form"),
    ],
)
def test_bad_kernel_sizes(img, size, message, tiny_config):
    with pytest.raises(InvalidInputError, match=message):
        deblur(img, size, preset=tiny_config, device="cpu")


def test_image_too_small_for_unet_depth(img):
    with pytest.raises(InvalidInputError, match="too small for a 5-level U-Net"):
        deblur(img[:20, :20], 5, preset="paper", device="cpu")


def test_unknown_preset_and_bad_iterations(img):
    with pytest.raises(InvalidInputError, match="unknown preset 'fastest'; choose one of"):
        deblur(img, 5, preset="fastest")
    with pytest.raises(InvalidInputError, match="iterations must be >= 1"):
        deblur(img, 5, preset="demo", iterations=0)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("cuda:x")


def test_out_of_memory_is_reported_with_advice(img, tiny_config, monkeypatch):
    import napari_selfdeblur.engine.solver as solver

    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 11.00 GiB")

    monkeypatch.setattr(solver, "fit_level", boom)
    with pytest.raises(OutOfMemoryError, match=r"^CPU ran out of memory.*crop") as info:
        deblur(img, 5, preset=tiny_config, device="cpu")
    assert "run on the CPU" not in str(info.value)  # the run is on the CPU already


def test_noise_estimate_is_close_to_truth():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:128, 0:128] / 128
    smooth = 0.3 + 0.4 * np.sin(3 * xx) * np.cos(2 * yy)
    for sigma in (0.005, 0.02, 0.05):
        est = estimate_noise_sigma(smooth + sigma * rng.standard_normal(smooth.shape))
        assert abs(est - sigma) < 0.15 * sigma


def test_config_from_spec():
    from napari_selfdeblur.config import config_from_spec

    cfg = config_from_spec("paper:blur=direct,channels_last=false,iterations=100")
    assert cfg.blur == "direct" and cfg.channels_last is False and cfg.iterations == 100
    assert config_from_spec("demo") == get_preset("demo")
    for bad in ("paper:image_net=1", "quick:map.nope=1", "quick:nope.gamma=1"):
        with pytest.raises(InvalidInputError, match="is not a setting that can be changed"):
            config_from_spec(bad)
    nested = config_from_spec("quick:map.candidates=3,map.gamma=10,polish=false")
    assert nested.map.candidates == 3 and nested.map.gamma == 10.0 and nested.polish is False
    assert nested.map.rounds == get_preset("quick").map.rounds  # the rest as the preset has it
    with pytest.raises(InvalidInputError, match="MAP candidates must be"):
        config_from_spec("quick:map.candidates=2")
    with pytest.raises(InvalidInputError, match="blur must be"):
        config_from_spec("paper:blur=magic")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"polish_rounds": 2.5}, "polish_rounds must be a whole number, got 2.5"),
        ({"iterations": 3.0}, "iterations must be a whole number, got 3.0"),
        ({"polish": "no"}, "polish must be true or false, got 'no'"),
        ({"final_strength_factor": "2"}, "final_strength_factor must be a number, got '2'"),
        ({"lr_milestones": (1.5,)}, r"lr_milestones must be a tuple of whole numbers"),
        ({"map": MapConfig(rounds=2.5)}, "MAP rounds must be a whole number, got 2.5"),
        ({"kernel_net": KernelNetConfig(hidden_size=8.0)}, "kernel_net.hidden_size must be a"),
        ({"image_net": ImageNetConfig(input_channels=True)}, "image_net.input_channels must be"),
    ],
)
def test_settings_of_the_wrong_type_are_named_in_one_line(img, changes, message):
    cfg = get_preset("quick").replace(**changes)
    with pytest.raises(InvalidInputError, match=message) as info:
        deblur(img, 5, preset=cfg, device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match=message):  # the same from a sidecar's config
        DeblurConfig.from_dict(cfg.to_dict())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"iterations": 2.5}, "iterations must be a whole number, got 2.5"),
        ({"iterations": "3"}, "iterations must be a whole number, got '3'"),
        ({"restarts": 1.5}, "restarts must be a whole number, got 1.5"),
        ({"restarts": 0}, "restarts must be >= 1, got 0"),
        ({"restarts": 2, "restart_iterations": 2.5}, "restart_iterations must be a whole number"),
    ],
)
def test_counts_given_to_deblur_must_be_whole_numbers(img, tiny_config, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        deblur(img, 5, preset=tiny_config, device="cpu", **kwargs)
    with pytest.raises(InvalidInputError, match=message):
        deblur_stack([img, img], 5, preset=tiny_config, device="cpu", **kwargs)


def test_batch_size_must_be_a_whole_number(img, tiny_config):
    for bad, message in ((2.5, "a whole number, got 2.5"), (True, "a whole number, got True")):
        with pytest.raises(InvalidInputError, match=f"batch_size must be {message}"):
            deblur_stack([img, img], 5, preset=tiny_config, device="cpu", batch_size=bad)


def test_numpy_numbers_in_a_config_become_python_numbers(img):
    import json

    cfg = get_preset("quick").replace(
        polish_rounds=np.int64(2), final_strength_factor=np.float32(4.0)
    )
    assert type(cfg.polish_rounds) is int and type(cfg.final_strength_factor) is float
    assert cfg == get_preset("quick").replace(polish_rounds=2, final_strength_factor=4.0)
    assert DeblurConfig(lr_milestones=[np.int64(5), 6]).lr_milestones == (5, 6)  # hashable
    result = deblur(img, 5, preset=cfg, device="cpu")
    saved = json.loads(json.dumps(result.metadata()))
    assert saved["config"]["polish_rounds"] == 2
    assert len(saved["polish"]["round_changes_l1"]) == 2


def _planted(path, obj):
    import pickle

    with open(path, "wb") as f:
        pickle.dump(obj, f)


class _Payload:
    """Unpickling this writes a file: what a planted checkpoint could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["payload", "list", "no-weights"])
def test_malformed_checkpoint_is_ignored_and_never_executed(img, tiny_config, tmp_path, kind):
    ckpt = tmp_path / "run.pt"
    marker = tmp_path / "pwned"
    obj = {"payload": _Payload(marker), "list": [1, 2], "no-weights": {"fingerprint": "x"}}[kind]
    if kind == "payload":
        _planted(ckpt, obj)
    else:
        torch.save(obj, ckpt)
    with pytest.warns(UserWarning, match="checkpoint"):
        r = deblur(img, 5, preset=tiny_config, device="cpu", checkpoint=ckpt)
    assert not marker.exists()
    assert (
        r.iterations_run == tiny_config.iterations and r.extra.get("resumed_from_iteration") is None
    )

"""The method and preset registries drive the API, the CLI, the widgets and the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from napari_selfdeblur.cli import build_parser
from napari_selfdeblur.config import (
    DEFAULT_PRESET,
    PRESETS,
    get_preset,
    network_presets,
    offered_presets,
)
from napari_selfdeblur.nonblind import DEFAULT_METHOD, METHODS, base, shared_params

ROOT = Path(__file__).resolve().parents[1]


def _subparser(name):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[name]


def _option(parser, dest):
    return next(a for a in parser._actions if a.dest == dest)


def test_cli_method_choices_and_default_come_from_the_registry():
    refine = _subparser("refine")
    method = _option(refine, "method")
    assert list(method.choices) == list(METHODS) and method.default == DEFAULT_METHOD
    for name, param in shared_params().items():
        assert _option(refine, f"param_{name}").type is param.kind


def test_cli_preset_choices_and_default_come_from_the_registry():
    for command in ("deblur", "demo", "analyze"):
        assert list(_option(_subparser(command), "preset").choices) == list(PRESETS)
    assert _option(_subparser("deblur"), "preset").default == DEFAULT_PRESET


def test_a_retired_preset_still_runs_but_is_no_longer_offered():
    retired = [n for n, p in PRESETS.items() if p.retired]
    assert retired == ["fast"] and DEFAULT_PRESET in offered_presets()
    assert set(offered_presets()) == set(PRESETS) - set(retired)
    with pytest.warns(FutureWarning, match="'fast' is retired"):
        assert get_preset("fast") == PRESETS["fast"].build()  # the same settings as before
    parser = _subparser("deblur")
    assert parser.parse_args(["in.png", "-k", "15", "--preset", "fast"]).preset == "fast"
    assert "retired, still accepted: fast" in _option(parser, "preset").help


def test_the_cli_prints_a_retired_preset_warning_as_one_line(tmp_path, capsys):
    from napari_selfdeblur.cli import main

    main(["deblur", str(tmp_path / "missing.png"), "-k", "5", "--preset", "fast"])
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("selfdeblur: warning:")]
    assert warning == [f"selfdeblur: warning: preset 'fast' is retired: {PRESETS['fast'].retired}"]
    assert "Traceback" not in err and "FutureWarning" not in err


def test_deep_prior_offers_every_network_preset():
    assert METHODS["deep-prior"].param("preset").choices == network_presets()


def test_function_widget_offers_every_method():
    pytest.importorskip("napari")
    from napari_selfdeblur._napari.functions import METHOD_CHOICES

    assert [name for _, name in METHOD_CHOICES] == list(METHODS)


def test_conflicting_parameter_types_are_refused(monkeypatch):
    import napari_selfdeblur.nonblind as nonblind

    odd = base.Method(
        name="odd",
        label="odd",
        help="",
        params=(base.Param("alpha", int, 1),),  # alpha is a float elsewhere
        strength_rule=None,
        run=lambda *a: None,
    )
    monkeypatch.setitem(nonblind.METHODS, "odd", odd)
    with pytest.raises(TypeError, match="alpha"):
        nonblind.shared_params()


@pytest.mark.parametrize("doc", ["docs/refine.md", "README.md"])
def test_docs_list_every_method(doc):
    text = (ROOT / doc).read_text()
    listed = set(re.findall(r"`([a-z-]+)`", text)) | set(re.findall(r'"([a-z-]+)"', text))
    missing = [m for m in METHODS if m not in listed]
    assert not missing, f"{doc} does not mention {missing}"


def test_docs_list_every_preset():
    text = (ROOT / "docs" / "engine.md").read_text()
    missing = [p for p in PRESETS if f"`{p}`" not in text]
    assert not missing, f"docs/engine.md does not describe {missing}"

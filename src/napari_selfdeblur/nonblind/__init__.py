"""Non-blind deconvolution: one module per method, and the registry that lists them.

Each method module holds its algorithm and its :class:`~.base.Method` entry; :data:`METHODS` lists
them explicitly, and the API, the CLI options, the widget controls and the docs are derived from
it. Adding a method means one module and one line below. Parameters that share a name across
methods must share their type (checked here, at import).
"""

from __future__ import annotations

from ..errors import InvalidInputError
from . import deep_prior, hyper_laplacian, richardson_lucy, sparse, wiener
from .base import Method, Param

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        hyper_laplacian.METHOD,
        sparse.METHOD,
        wiener.METHOD,
        richardson_lucy.METHOD,
        deep_prior.METHOD,
    )
}

#: The method used when none is named.
DEFAULT_METHOD = "hyper-laplacian"


def get_method(name: str) -> Method:
    """The registered method called ``name``; a clear error naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown refinement method {name!r}; choose one of {', '.join(METHODS)}"
        ) from None


def shared_params() -> dict[str, Param]:
    """Every parameter name across methods, with the first method's description of it.

    Raises TypeError when two methods give one name different types (the CLI and the widgets
    show one control per name).
    """
    seen: dict[str, Param] = {}
    for m in METHODS.values():
        for p in m.params:
            first = seen.setdefault(p.name, p)
            if first.kind is not p.kind:
                raise TypeError(
                    f"parameter {p.name!r} is {first.kind.__name__} in one method and "
                    f"{p.kind.__name__} in {m.name!r}"
                )
    return seen


shared_params()

__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "Param", "get_method", "shared_params"]

"""Exceptions raised by the engine, with messages meant for the person who gave the input."""

from __future__ import annotations


class SelfDeblurError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(SelfDeblurError, ValueError):
    """The image, kernel or a parameter cannot be used; the message names the problem."""


class DeviceError(SelfDeblurError, RuntimeError):
    """The requested compute device is unknown or not available."""


class NumericalError(SelfDeblurError, FloatingPointError):
    """The optimisation produced NaN or infinite values (e.g. from extreme input values)."""


class OutOfMemoryError(SelfDeblurError, MemoryError):
    """The device ran out of memory; the message suggests what to do instead."""

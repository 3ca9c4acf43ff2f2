"""Argument checks shared by the library: clear TypeError / ValueError messages."""

from __future__ import annotations

from typing import Any


def check_int(name: str, value: Any, low: int) -> None:
    """Raises unless ``value`` is an int (not a bool) ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")

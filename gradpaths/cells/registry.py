"""The cell registry: name -> constructor ``f(hidden_size, **options) -> cell``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str) -> Callable:
    """Decorator: ``@register("mingru")`` on a constructor that takes ``hidden_size`` first."""

    def add(fn: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"a cell named {name!r} is already registered ({REGISTRY[name].__module__})")
        REGISTRY[name] = fn
        return fn

    return add

"""The layouts registry and auto-detection.

Each layout is one small module; the registry maps the ``--layout`` name to
``"module:Class"`` and imports it only when used. Detection looks at the top
level of DIR with a fixed precedence (the order of ``REGISTRY``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .access import Access
    from .base import Layout, Listing

__all__ = ["REGISTRY", "UnknownLayout", "create", "detect_all", "layout_class", "names"]

#: ``--layout`` name -> "module:Class", in detection precedence.
REGISTRY: dict[str, str] = {
    "tf": "ckptwatch.layouts.tf:TFLayout",
    "hf": "ckptwatch.layouts.hf:HFLayout",
    "dcp": "ckptwatch.layouts.dcp:DCPLayout",
    "orbax": "ckptwatch.layouts.orbax:OrbaxLayout",
    "deepspeed": "ckptwatch.layouts.deepspeed:DeepSpeedLayout",
    "megatron": "ckptwatch.layouts.megatron:MegatronLayout",
    "nemo": "ckptwatch.layouts.nemo:NeMoLayout",
    "ray": "ckptwatch.layouts.ray:RayLayout",
    "marker": "ckptwatch.layouts.marker:MarkerLayout",
    "keras": "ckptwatch.layouts.keras:KerasLayout",
    "torch": "ckptwatch.layouts.torch:TorchLayout",
    "lightning": "ckptwatch.layouts.lightning:LightningLayout",
    "glob": "ckptwatch.layouts.glob:GlobLayout",
}


class UnknownLayout(ValueError):
    """A ``--layout`` value that names no layout."""


def names() -> list[str]:
    return list(REGISTRY)


def layout_class(name: str) -> type[Layout]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownLayout(f"unknown layout {name!r}; choose auto or one of: {', '.join(REGISTRY)}") from None
    module, _, attr = target.partition(":")
    cls: type[Layout] = getattr(importlib.import_module(module), attr)
    return cls


def create(spec: str, root: str, fs: Access | None = None) -> Layout:
    """A layout from a ``--layout`` value: ``NAME`` or ``NAME:ARGUMENT`` (``glob:model_{step}.pt``).

    ``fs``: how DIR is read (None: the local directory ``root``).
    """
    name, colon, argument = spec.partition(":")
    cls = layout_class(name)
    if cls.takes_argument and not argument:
        raise UnknownLayout(f"layout {name} needs an argument: --layout '{name}:{cls.argument_help}'")
    if colon and not cls.takes_argument:
        raise UnknownLayout(f"layout {name} takes no argument; use --layout {name}")
    return cls(root, argument or None, fs)


def detect_all(view: Callable[[type[Layout]], Listing]) -> list[tuple[str, str]]:
    """``(layout name, why)`` for every layout that recognises DIR, in precedence order.

    ``view(cls)`` gives the part of DIR that interests layout ``cls``
    (``DirIndex.view``; ``lambda cls: listing`` for a plain listing).
    """
    found = []
    for name in REGISTRY:
        cls = layout_class(name)
        reason = cls.detect(view(cls))
        if reason:
            found.append((name, reason))
    return found


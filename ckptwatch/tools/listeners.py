"""``ckptwatch listeners``: the Python listeners installed packages offer.

A package offers a listener class through the entry point group
``ckptwatch.listeners`` (``name = "module:Class"``); ``-l NAME`` or
``[listener.X] class = "NAME"`` then runs it. Listing reads the packages'
metadata and sources only: nothing is imported (a listener may import
TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..delivery.pytarget import ENTRY_POINT_GROUP, class_summary, entry_points, parse_target

__all__ = ["Installed", "installed", "lines"]


@dataclass(frozen=True)
class Installed:
    name: str
    target: str
    origin: str
    summary: str


def installed() -> list[Installed]:
    """Every installed listener, by name."""
    found = []
    for name, (value, origin) in sorted(entry_points().items()):
        target = parse_target(value)
        summary = class_summary(target) if target is not None else "(not MODULE:CLASS)"
        found.append(Installed(name, value, origin, summary))
    return found


def lines(listeners: list[Installed]) -> list[str]:
    if not listeners:
        return [f"no installed listeners (a package offers one with an entry point in the group {ENTRY_POINT_GROUP}: "
                "name = \"module:Class\")"]
    width = max(len(item.name) for item in listeners)
    out = []
    for item in listeners:
        out.append(f"{item.name:<{width}}  {item.target}  ({item.origin})")
        if item.summary:
            out.append(f"{'':<{width}}    {item.summary}")
    out.append("")
    out.append("run one with: ckptwatch run DIR -l NAME   (or [listener.X] class = \"NAME\" in ckptwatch.toml)")
    return out

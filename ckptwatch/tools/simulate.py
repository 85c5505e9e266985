"""``ckptwatch simulate``: your listeners against a fake training run, live.

A fake training job (:mod:`.fakesaves`) writes real-looking saves of one
layout into a temporary directory, one every S seconds, while a real
``ckptwatch run`` wraps it and runs your listeners, so you see every event
as it happens. It ends after the last save, or when a listener asks for a
stop (the fake job reads the stop file before each save, as training would).
The exit status is ``run``'s.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

from .fakesaves import LAYOUTS

__all__ = ["simulate"]


def simulate(
    *,
    layout: str,
    saves: int,
    every: float,
    step_size: int,
    locations: tuple[str, ...],
    settings: Mapping[str, Mapping[str, Any]],
    log_format: str = "auto",
    listener_timeout: float | None = None,
    keep: bool = False,
) -> int:
    """Run the fake job under ``ckptwatch run``; the exit status of ``run``."""
    from ..config import Config
    from ..engine import run as run_engine
    from ..report.console import emit, setup_logging

    if layout not in LAYOUTS:
        raise ValueError(f"simulate writes {', '.join(LAYOUTS)}, not {layout!r}")
    work = tempfile.mkdtemp(prefix="ckptwatch-simulate-")
    ckpt = os.path.join(work, "ckpt")
    command = (sys.executable, "-m", "ckptwatch.tools.fakesaves", ckpt, layout, str(saves), str(every),
               str(step_size))
    config = Config(
        dir=ckpt,
        listeners=locations,
        layout=layout,
        state_dir=os.path.join(work, "state"),
        log_format=log_format,  # type: ignore[arg-type]
        command=command,
        listener_settings=settings,
        listener_timeout=listener_timeout,
    )
    thread = setup_logging(config.log_format)
    try:
        emit("info", f"simulate: {saves} {layout} save(s), one every {every:g} s, into {ckpt}")
        return run_engine(config)
    finally:
        if keep:
            emit("info", f"simulate: kept {work}")
        thread.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)

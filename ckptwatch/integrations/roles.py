"""Chief or worker: which process of a multi-host job decides (reads the stop file, runs listeners that stop).

When every host of a job runs a watcher on a shared directory (a sidecar per
pod), TensorFlow's rule applies: only the chief's listeners may ask training
to stop. ``--role worker`` runs only the listeners whose ``roles`` (a
``[listener.NAME]`` key of ckptwatch.toml, default ``["chief"]``) include
``worker``, and never writes the stop file. ``--role auto`` reads the job's
own environment: ``TF_CONFIG`` (task ``chief``/``master``, or ``worker`` 0
when the cluster has no chief, is the chief), else ``RANK``, else
``JOB_COMPLETION_INDEX`` (0 is the chief), else chief. The watcher's
``--role auto`` and the training side (which process reads the stop file
when no framework collective says) use the same rule, so it lives here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["DEFAULT_ROLES", "ROLES", "resolve_role"]

ROLES = ("chief", "worker")
#: A listener's roles when its table says nothing.
DEFAULT_ROLES = frozenset({"chief"})


def resolve_role(value: str, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(chief|worker, why)`` for ``--role value``."""
    if value in ROLES:
        return value, f"--role {value}"
    tf_config = environ.get("TF_CONFIG")
    if tf_config:
        found = _from_tf_config(tf_config)
        if found is not None:
            return found
    for name in ("RANK", "JOB_COMPLETION_INDEX"):
        raw = environ.get(name, "").strip()
        if raw.isdigit():
            return ("chief" if int(raw) == 0 else "worker"), f"{name}={raw}"
    return "chief", "no TF_CONFIG, RANK or JOB_COMPLETION_INDEX: a single host"


def _from_tf_config(text: str) -> tuple[str, str] | None:
    try:
        config = json.loads(text)
        task = config.get("task") or {}
        kind = str(task.get("type", "")).lower()
        index = int(task.get("index", 0))
        cluster = config.get("cluster") or {}
    except (ValueError, TypeError, AttributeError):
        return None
    if not kind:
        return None
    where = f"TF_CONFIG task {kind}:{index}"
    if kind in ("chief", "master"):
        return "chief", where
    if kind == "worker" and index == 0 and not (set(cluster) & {"chief", "master"}):
        return "chief", f"{where} (no chief in the cluster: worker 0 is the chief)"
    return "worker", where

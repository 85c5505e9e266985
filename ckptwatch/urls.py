"""Object-store URLs (``s3://bucket/run``, ``gs://...``): the few functions both sides need.

The watcher (DIR as a URL, the stop file as one PUT) and the training-side
helpers (reading a stop file at a URL) share these. This module imports
nothing of the watcher, and fsspec only inside the functions that talk to a
store, so a training image pays for it only when it uses a URL.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MissingProtocol", "filesystem", "info_mtime", "is_url", "join", "put_bytes", "read_bytes", "stat_url", "strip"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: The pip extra that brings each protocol's fsspec implementation.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class MissingProtocol(ValueError):
    """fsspec, or its implementation of a URL's protocol, is not installed; the message says what to install."""


def is_url(path: str | None) -> bool:
    """Whether ``path`` names an object store (``PROTOCOL://...``), not a local path (``file://`` is local)."""
    if not path:
        return False
    match = _SCHEME.match(path)
    return bool(match) and match.group(1).lower() not in ("file", "local")


def strip(url: str) -> str:
    """A URL without its trailing slashes (``s3://b/run/`` -> ``s3://b/run``)."""
    head = _SCHEME.match(url)
    rest = url[head.end():] if head else url
    return (url[: head.end()] if head else "") + rest.rstrip("/")


def join(url: str, rel: str) -> str:
    return f"{strip(url)}/{rel}" if rel else strip(url)


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> Any:
    """A fresh fsspec filesystem for ``url`` (no shared instance, no listings cache).

    Raises :class:`MissingProtocol` with the pip line to run when fsspec or
    the protocol's implementation is missing.
    """
    match = _SCHEME.match(url)
    protocol = match.group(1).lower() if match else "file"
    extra = EXTRAS.get(protocol)
    hint = f"pip install 'ckptwatch[{extra}]'" if extra else "install the fsspec implementation of that protocol"
    try:
        import fsspec
    except ImportError:
        raise MissingProtocol(f"{url}: object stores need fsspec: {hint}") from None
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise MissingProtocol(f"{url}: no fsspec implementation of {protocol}:// here ({exc}); {hint}") from None
    options = {"skip_instance_cache": True, **(storage_options or {})}
    if getattr(cls, "async_impl", False) or protocol in EXTRAS:
        options.setdefault("use_listings_cache", False)
    try:
        return cls(**options)
    except TypeError as exc:
        raise MissingProtocol(f"{url}: a storage option is not understood by {protocol}://: {exc}") from None


def stat_url(url: str, storage_options: dict[str, Any] | None = None, fs: Any = None) -> tuple[float, int] | None:
    """``(mtime in seconds, size)`` of the object at ``url``, or None when there is none (one request).

    For a training loop's stop check: other errors (network) propagate.
    """
    fs = fs or filesystem(url, storage_options)
    try:
        info = fs.info(url)
    except FileNotFoundError:
        return None
    if info.get("type") == "directory":
        return None
    return info_mtime(info), int(info.get("size") or 0)


def read_bytes(url: str, storage_options: dict[str, Any] | None = None, fs: Any = None,
               limit: int = 1 << 20) -> bytes | None:
    """The first ``limit`` bytes of the object at ``url``, or None when there is none (one GET).

    For a training loop reading a stop file at a URL; other errors propagate.
    """
    fs = fs or filesystem(url, storage_options)
    try:
        data: bytes = fs.cat_file(url, start=0, end=limit)
    except FileNotFoundError:
        return None
    return data


def put_bytes(url: str, data: bytes, storage_options: dict[str, Any] | None = None, fs: Any = None) -> None:
    """Write the object at ``url`` whole, in one PUT: a reader sees the old object or the new one."""
    fs = fs or filesystem(url, storage_options)
    fs.pipe_file(url, data)


def info_mtime(info: dict[str, Any]) -> float:
    """The modification time an fsspec ``info`` carries (S3 ``LastModified``, GCS ``updated``/``mtime``, ...)."""
    import datetime

    for key in ("LastModified", "mtime", "updated", "last_modified", "created", "timeCreated"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.timezone.utc)
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0

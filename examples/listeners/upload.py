"""Upload each committed checkpoint with a manifest of digests: DEST/<name>/..., then DEST/<name>/MANIFEST.json.

    [listener.upload]
    class = "examples/listeners/upload.py:Upload"
    args = { dest = "/mnt/backup/run-42" }       # or "s3://bucket/run-42", "gs://bucket/run-42"
    events = ["after_save"]
    on_failure = "retry:3"

Every file of the checkpoint (a directory's files, TensorFlow's
``PREFIX.index`` and ``PREFIX.data-*``, or a single file) is copied while its
SHA-256 is computed; ``MANIFEST.json`` (step, files, sizes, digests) is
written last, so a reader that finds the manifest finds the whole
checkpoint. A checkpoint whose manifest is already there with the same
digests is not uploaded again (a retry, a restart). ``dest`` is a local path
(a mounted bucket, an NFS share), or any URL fsspec knows, with its package
installed beside ckptwatch (``pip install s3fs`` for ``s3://``, ``gcsfs``
for ``gs://``; credentials as that package reads them).
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from ckptwatch import CheckpointSaverListener

CHUNK = 1 << 20


def checkpoint_files(checkpoint: str, layout: str) -> dict[str, str]:
    """Relative name -> path of every file the checkpoint is made of."""
    if os.path.isdir(checkpoint):
        found = {}
        for root, _dirs, files in os.walk(checkpoint):
            for name in files:
                path = os.path.join(root, name)
                found[os.path.relpath(path, checkpoint)] = path
        return found
    if layout == "tf" or not os.path.exists(checkpoint):  # a prefix: PREFIX.index, PREFIX.data-*
        folder, base = os.path.split(checkpoint)
        return {n: os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(base + ".")}
    return {os.path.basename(checkpoint): checkpoint}


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _Local:
    def __init__(self, root: str):
        self.root = root

    def open(self, rel: str, mode: str):
        path = os.path.join(self.root, rel)
        if "w" in mode:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, mode)

    def replace_from(self, tmp_rel: str, rel: str) -> None:
        os.replace(os.path.join(self.root, tmp_rel), os.path.join(self.root, rel))


class _Remote:
    def __init__(self, url: str):
        try:
            import fsspec
        except ImportError:
            raise RuntimeError(f"dest {url} needs fsspec (pip install fsspec and its {url.split(':')[0]} "
                               "package, beside ckptwatch)") from None
        self.fs, self.root = fsspec.core.url_to_fs(url)

    def open(self, rel: str, mode: str):
        return self.fs.open(f"{self.root}/{rel}", mode)

    def replace_from(self, tmp_rel: str, rel: str) -> None:
        self.fs.mv(f"{self.root}/{tmp_rel}", f"{self.root}/{rel}")


class Upload(CheckpointSaverListener):
    """Upload each checkpoint, manifest last."""

    def __init__(self, dest: str):
        self.dest = dest
        self.store = _Remote(dest) if "://" in dest else _Local(os.path.abspath(dest))

    def _existing(self, name: str) -> dict | None:
        try:
            with self.store.open(f"{name}/MANIFEST.json", "rb") as handle:
                return json.load(handle)
        except (OSError, ValueError, FileNotFoundError):
            return None

    def after_save(self, event):
        name = os.path.basename(event.checkpoint.rstrip("/"))
        files = checkpoint_files(event.checkpoint, event.layout)
        if not files:
            raise RuntimeError(f"no files found for checkpoint {event.checkpoint}")
        started = time.monotonic()
        entries = {rel: {"size": os.path.getsize(path), "sha256": _digest(path)} for rel, path in sorted(files.items())}
        total = sum(entry["size"] for entry in entries.values())
        previous = self._existing(name)
        if previous is not None and previous.get("files") == entries:
            print(f"step {event.step}: {name} is already in {self.dest} with the same digests")
            return
        for rel, path in sorted(files.items()):
            digest = hashlib.sha256()
            with open(path, "rb") as source, self.store.open(f"{name}/{rel}", "wb") as target:
                for block in iter(lambda: source.read(CHUNK), b""):
                    digest.update(block)
                    target.write(block)
            if digest.hexdigest() != entries[rel]["sha256"]:
                raise RuntimeError(f"{path} changed while it was uploaded")
        manifest = {"step": event.step, "checkpoint": name, "source": event.checkpoint, "files": entries,
                    "bytes": total, "uploaded": time.time()}
        with self.store.open(f"{name}/MANIFEST.json.tmp", "w") as out:
            json.dump(manifest, out, indent=1)
        self.store.replace_from(f"{name}/MANIFEST.json.tmp", f"{name}/MANIFEST.json")  # last: the commit
        print(f"step {event.step}: uploaded {len(entries)} file(s), {total} bytes, to {self.dest}/{name} "
              f"in {time.monotonic() - started:.2f} s")

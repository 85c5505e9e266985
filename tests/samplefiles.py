"""Bytes shaped like the files frameworks write, made without the frameworks.

``torch_zip`` is laid out as ``torch.save`` lays it out (``NAME/data.pkl``,
``NAME/data/0``, ... stored, not compressed), with a plain pickle of ``obj``;
``keras_zip`` holds what a ``.keras`` file holds; ``hdf5`` is an HDF5
version-0 superblock (as h5py writes by default) whose end-of-file address is
the file's size, padded out. The layouts only read the zip's end records and
the superblock, so these pass or fail their checks as the real files do
(``tests/interop`` checks the real ones).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def hdf5(size: int = 4096) -> bytes:
    undefined = b"\xff" * 8
    head = HDF5_MAGIC + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + struct.pack("<HHI", 4, 16, 0)
    head += struct.pack("<Q", 0) + undefined + struct.pack("<Q", size) + undefined
    head += bytes(40)  # root group symbol table entry
    return head + os.urandom(size - len(head))


def torch_zip(obj: object, name: str = "archive", payload: int = 2048) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", pickle.dumps(obj, protocol=2))
        archive.writestr(f"{name}/byteorder", "little")
        archive.writestr(f"{name}/data/0", os.urandom(payload))
        archive.writestr(f"{name}/version", "3\n")
    return buffer.getvalue()


def keras_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps({"class_name": "Sequential"}))
        archive.writestr("model.weights.h5", hdf5(2048))
    return buffer.getvalue()


def lightning_ckpt(step: int, epoch: int = 0) -> bytes:
    return torch_zip({"epoch": epoch, "global_step": step, "pytorch-lightning_version": "2.6.6",
                      "state_dict": {}, "callbacks": {}}, name="archive")

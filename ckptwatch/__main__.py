"""``python -m ckptwatch``: the same as the ``ckptwatch`` command."""

from .cli import entry

entry()

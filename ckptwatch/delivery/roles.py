"""``--role``: a worker watcher runs only the listeners marked for workers, and never writes the stop file.

The rule that turns ``--role auto`` into chief or worker is shared with the
training side: :func:`ckptwatch.integrations.roles.resolve_role`.
"""

from __future__ import annotations

from ..integrations.roles import DEFAULT_ROLES, ROLES, resolve_role

__all__ = ["DEFAULT_ROLES", "ROLES", "resolve_role"]

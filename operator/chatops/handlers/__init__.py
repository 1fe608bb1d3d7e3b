"""Thin kopf handlers: observe, call a pure decision, execute, patch status once.

Importing this package registers every handler with kopf.
"""

from chatops.handlers import accept, backup, recovery, release, settings

__all__ = ["accept", "backup", "recovery", "release", "settings"]

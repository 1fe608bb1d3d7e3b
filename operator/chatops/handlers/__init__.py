"""Thin kopf handlers: observe, call a pure decision, execute, patch status once.

Importing this package registers every handler with kopf.
"""

from chatops.handlers import accept, settings

__all__ = ["accept", "settings"]

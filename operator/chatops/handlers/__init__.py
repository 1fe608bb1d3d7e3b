"""Thin kopf handlers: observe, call a pure decision, execute, patch status once.

Importing this package registers every handler with kopf.
"""

from chatops.handlers import backup, drills, recovery, release, settings, watched

__all__ = ["backup", "drills", "recovery", "release", "settings", "watched"]

"""Every error chatops raises on purpose, in one hierarchy.

    ChatopsError
    └── InvalidSpec      a resource's spec cannot be acted on; names resource and field

A user-facing error says which resource, which field, and what to do. None of them may
carry a secret: messages are built from names and field paths, never from values read
out of Secrets.
"""

from __future__ import annotations


class ChatopsError(Exception):
    """Base of the errors chatops raises on purpose."""


class InvalidSpec(ChatopsError):
    """The spec of a resource passed the API server's schema but cannot be acted on."""

    def __init__(self, resource: str, field: str, problem: str) -> None:
        self.resource = resource
        self.field = field
        self.problem = problem
        super().__init__(f"{resource}: {field}: {problem}")

"""Release gates as HTTP webhooks, Flagger's three kinds: an endpoint of the platform
team's own decides whether traffic may move, whether the release may be promoted, and
hears of every rollback.

The spec models are here; what was called and answered is `WebhookCall` in the status,
kept per revision, so a restarted operator neither calls a passed gate again nor forgets
a rollback it still owes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.bounds import Rule
from chatops.api.common import Model, Name

WebhookType = Literal["pre-rollout", "confirm-promotion", "rollback"]

_RULES = (
    Rule(
        "!has(self.metadata) || self.metadata.all(k, size(k) <= 63)",
        "metadata keys are at most 63 characters",
        lambda w: all(len(k) <= 63 for k in w.metadata),
    ),
)


class Webhook(Model):
    """An HTTP endpoint POSTed a JSON payload (`chatops.dev/webhook/v1`: type, release,
    namespace, revision, version, phase, step, message, metadata) at one moment of every
    release; any 2xx answer within `timeoutSeconds` passes, anything else fails.

    - `pre-rollout`: called once the new version is Available and its health checks and
      smoke test passed, before any traffic moves (canary and blue-green). A failure
      holds the release and calls again every few seconds; more than `failureLimit`
      failures roll it back (reason PreRolloutWebhookFailed).
    - `confirm-promotion`: called at the last step — after the canary's last pause, before
      a blue-green switch, at the end of a rolling update's window — and holds the
      release there (phase Paused, the analysis still running and still able to roll
      back) until it answers 2xx. `chatops promote --full` confirms it instead.
    - `rollback`: called on every rollback, after traffic went back to the stable
      version; it never holds the rollback, and is called again on failure up to
      `failureLimit` + 1 times in all.
    """

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_RULES))

    @model_validator(mode="after")
    def _rules(self) -> Webhook:
        return bounds.enforce(self, _RULES)

    name: Name
    """Names the webhook in status, Events and the payload."""
    type: WebhookType
    """pre-rollout, confirm-promotion or rollback."""
    url: bounds.URL
    """Where the payload is POSTed."""
    timeout_seconds: int = Field(default=10, ge=1, le=60)
    """Longest a call may take; a call that takes longer fails. The release's look
    waits for it on one of the operator's worker threads, so it is at most a minute."""
    failure_limit: bounds.Limit = 2
    """pre-rollout: failed calls tolerated before the release rolls back; rollback:
    failed calls retried. confirm-promotion holds however often it fails."""
    metadata: dict[str, Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=8
    )
    """Passed through in the payload's `metadata`, e.g. a test suite to run."""


class WebhookCall(Model):
    """What a webhook answered for one release (revision)."""

    name: Name
    """The webhook (`spec.webhooks[].name`)."""
    type: WebhookType
    """Its type when it was called."""
    revision: str = Field(max_length=63)
    """The revision it was called for."""
    passed: bool = False
    """Whether it answered 2xx; a rollback webhook also counts as done once its
    attempts are spent (`calls` > its failureLimit)."""
    calls: int = Field(default=0, ge=0)
    """Calls so far."""
    failures: int = Field(default=0, ge=0)
    """Calls that did not answer 2xx in time."""
    last_called_at: str | None = None
    """When it was last called (RFC 3339); the next call waits a few seconds from then."""
    message: str | None = Field(default=None, max_length=1024)
    """What the last call got: `HTTP 200`, `HTTP 503`, `no answer within 10 s`,
    `confirmed by chatops.dev/promote`."""

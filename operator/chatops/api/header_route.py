"""A canary step's header route: requests carrying a given header (or cookie) go to the
new version whatever the weights say, so dogfood users try it before anyone else.

It is Argo Rollouts' `setHeaderRoute` on Gateway API: the HTTPRoute gets, per rule that
routes a component, a rule of chatops' own with the same matches plus these headers and
the new color's Service as its only backend. Gateway API ranks a rule with more header
matches above one with fewer on the same path, so the weighted rule is never touched.
Gateway API has no cookie match: a cookie is matched as the `Cookie` header with a
regular expression, e.g. `(^|;\\s*)canary=always(;|$)`.

Bounds are tight (names of 48 characters, values of 100, two headers) because every one
of 40 steps may carry one, and the largest spec must stay well under what `kubectl
apply` may keep in its annotation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from chatops.api import bounds
from chatops.api.bounds import Rule
from chatops.api.common import Model

HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
"""An HTTP header name (RFC 7230 token), as Gateway API's HTTPHeaderName takes it."""


class HeaderMatch(Model):
    """One header a request must carry, in the shape of Gateway API's HTTPHeaderMatch."""

    name: Annotated[str, Field(min_length=1, max_length=48, pattern=HEADER_NAME)]
    """Header name, case-insensitive (`Cookie` to match a cookie)."""
    type: Literal["Exact", "RegularExpression"] = "Exact"
    """`Exact`: the whole value, byte for byte; `RegularExpression`: a regular expression
    the value must match, in the Gateway implementation's dialect (RE2 for Traefik and
    Envoy)."""
    value: Annotated[str, Field(min_length=1, max_length=100)]
    """The value, or the regular expression."""


_ROUTE_RULES = (
    Rule(
        "self.match.all(m, self.match.filter(n, n.name.lowerAscii() == m.name.lowerAscii())"
        ".size() == 1)",
        "each header name appears once in headerRoute.match",
        lambda r: len({m.name.lower() for m in r.match}) == len(r.match),
    ),
)


class HeaderRoute(Model):
    """Send requests carrying all of `match` to the new version of every component, from
    this step until the release ends (promotion, rollback or deletion) or a later
    headerRoute step replaces it; an empty `match` removes it."""

    model_config = ConfigDict(json_schema_extra=bounds.validations(*_ROUTE_RULES))

    @model_validator(mode="after")
    def _rules(self) -> HeaderRoute:
        return bounds.enforce(self, _ROUTE_RULES)

    match: Annotated[list[HeaderMatch], Field(max_length=2)]
    """Headers a request must all carry (at most 2, e.g. a header and a cookie; none:
    remove the header route)."""

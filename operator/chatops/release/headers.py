"""Header routes in the release core: a canary step's `headerRoute` in the router's
terms, and what the router shows of it, as pure functions of the observation."""

from __future__ import annotations

from chatops.api.header_route import HeaderRoute
from chatops.release.model import Color, Observation
from chatops.traffic.router import HeaderMatch


def header_matches(route: HeaderRoute | None) -> tuple[HeaderMatch, ...]:
    """A step's (or the status') header route in the router's terms."""
    if route is None:
        return ()
    return tuple(HeaderMatch(m.name, m.value, m.type) for m in route.match)


def headers_show(obs: Observation, color: Color, matches: tuple[HeaderMatch, ...]) -> bool:
    """Whether the router shows every component's header route sending `matches` to
    `color` (none: no header route at all)."""
    wanted = frozenset({(color, matches)}) if matches else frozenset()
    return all(
        frozenset(obs.header_routes.get(c.name, ())) == wanted for c in obs.spec.components
    )


def describe_headers(matches: tuple[HeaderMatch, ...]) -> str:
    """`X-Canary: dogfood` and `Cookie ~ (^|;)canary=always`, for messages."""
    return " and ".join(
        f"{m.name}: {m.value}" if m.type == "Exact" else f"{m.name} ~ {m.value}" for m in matches
    )


def headers_shown(obs: Observation) -> str:
    """What the router shows of the release's header route, for a message."""
    shown = sorted(
        f"{c.name} {describe_headers(matches) or 'a stale rule'} to {color}"
        for c in obs.spec.components
        for color, matches in obs.header_routes.get(c.name, ())
    )
    return f"the router shows {', '.join(shown)}" if shown else "the router shows no header route"


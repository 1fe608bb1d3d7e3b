"""One Prometheus query for every release that shares a metric's query template.

A release's query is its template with `{{service}}`, `{{namespace}}`… filled in. For
many releases at once, the same template can be asked once: each `label="{{p}}"`
matcher becomes `label=~"v1|v2|…"` over the values of all of them, and every
aggregation keeps those labels (`sum(…)` becomes `sum by (namespace, service, revision)
(…)`), so the answer has one series per release, labelled with what its own query
would have selected. The value of that series is what its own query answers, because
every operation of a template accepted here acts on each label set apart:

- every vector selector binds the same labels to placeholders, by `=` only, and no
  placeholder appears anywhere else;
- aggregations are `by` (the labels are added) or `without` labels that are not bound;
- functions keep each series' labels (`rate`, `histogram_quantile`, `clamp_min`…): no
  `vector`, `scalar`, `absent`, `label_replace`;
- binary operations match on all labels (no `on`/`ignoring`/`group_left`): a series of
  one release meets only series of the same release.

A template outside these rules gets `None` from `grouping`, and each release asks its
own query, as before. The grouped form is printed from the parsed query and parsed
again; if what it selects differs from the template in anything but the grouping (a
printer that lost an escape), the template is not grouped either.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import promql_parser as pq

from chatops.metrics.analysis import QueryContext, render

_BOUND = re.compile(r"\A\{\{\s*(\w+)\s*\}\}\Z")
_PRINTED = re.compile(r'(\w+)="\{\{\s*(\w+)\s*\}\}"')
_SAFE_VALUE = re.compile(r"\A[A-Za-z0-9_:.-]*\Z")
"""Values written into a regex matcher as they are (a `.` escaped): Kubernetes names,
revisions. Anything else makes the release ask its own query."""

KEEPS_LABELS = frozenset(
    {
        "rate", "irate", "increase", "delta", "idelta", "deriv", "resets", "changes",
        "predict_linear", "histogram_quantile", "histogram_count", "histogram_sum",
        "histogram_avg", "histogram_fraction", "histogram_stddev", "histogram_stdvar",
        "abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn",
        "clamp", "clamp_min", "clamp_max", "sort", "sort_desc",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
        "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time",
        "last_over_time", "present_over_time",
    }
)
"""Functions that act on each series apart and keep its labels."""
AGGREGATIONS = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile",
     "topk", "bottomk"}
)


@dataclass(frozen=True)
class Grouping:
    """A template that can be asked once for many releases."""

    template: str
    printed: str
    """The template with every aggregation grouped by `labels`; placeholders still in."""
    bindings: tuple[tuple[str, str], ...]
    """(label, placeholder) pairs, by label."""

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(label for label, _ in self.bindings)

    def key(self, context: QueryContext) -> tuple[str, ...]:
        """The label values of the series that answers for `context`."""
        return tuple(str(getattr(context, p)) for _, p in self.bindings)


class _NotGrouped(Exception):
    pass


@functools.lru_cache(maxsize=512)
def grouping(template: str) -> Grouping | None:
    """The template's grouped form, or None when it cannot be grouped (module docstring)."""
    try:
        tree = pq.parse(template)
        bindings = _bindings(tree, template)
        labels = [label for label, _ in bindings]
        printed = _print(tree, labels)
        if _selected(pq.parse(printed)) != _selected(tree):
            return None
    except (_NotGrouped, ValueError):
        return None
    return Grouping(template, printed, bindings)


def query(grouping: Grouping, contexts: Iterable[QueryContext]) -> str | None:
    """One query answering for every context; None when a value cannot go in a regex."""
    values: dict[str, set[str]] = {p: set() for _, p in grouping.bindings}
    for context in contexts:
        for _, placeholder in grouping.bindings:
            values[placeholder].add(str(getattr(context, placeholder)))
    if any(not _SAFE_VALUE.match(v) for vs in values.values() for v in vs):
        return None

    def alternation(match: re.Match[str]) -> str:
        label, placeholder = match.group(1), match.group(2)
        choices = "|".join(v.replace(".", "\\\\.") for v in sorted(values[placeholder]))
        return f'{label}=~"{choices}"'

    return _PRINTED.sub(alternation, grouping.printed)


def answers(
    grouping: Grouping,
    contexts: Iterable[QueryContext],
    series: Sequence[tuple[Mapping[str, str], float]],
) -> dict[str, float | None]:
    """Each context's own query (rendered) and what it would answer: the one series of
    its labels, None (no data) when there is none; a context with several series (its
    own query would be refused) is left out."""
    found: dict[tuple[str, ...], list[float]] = {}
    for labels, value in series:
        found.setdefault(tuple(labels.get(label, "") for label in grouping.labels), []).append(
            value
        )
    out: dict[str, float | None] = {}
    for context in contexts:
        values = found.get(grouping.key(context), [])
        if len(values) <= 1:
            out[render(grouping.template, context)] = values[0] if values else None
    return out


# -- what a template may hold ---------------------------------------------------------------


def _bindings(tree: Any, template: str) -> tuple[tuple[str, str], ...]:
    bound: dict[str, str] = {}
    selectors: list[frozenset[str]] = []
    count = 0

    def visit(node: Any) -> bool:
        nonlocal count
        if isinstance(node, pq.SubqueryExpr):
            raise _NotGrouped("a subquery")
        if isinstance(node, pq.Call) and node.func.name not in KEEPS_LABELS:
            raise _NotGrouped(node.func.name)
        if isinstance(node, pq.AggregateExpr) and str(node.op) not in AGGREGATIONS:
            raise _NotGrouped(str(node.op))
        if isinstance(node, pq.BinaryExpr) and node.modifier is not None and (
            node.modifier.matching is not None or node.modifier.group_labels
        ):
            raise _NotGrouped("vector matching")
        if isinstance(node, pq.VectorSelector):  # walked into from a MatrixSelector too
            if node.matchers.or_matchers:
                raise _NotGrouped("or matchers")
            labels = set()
            for m in node.matchers.matchers:
                found = _BOUND.match(m.value)
                if found is None:
                    continue
                if m.op != pq.MatchOp.Equal or bound.setdefault(m.name, found[1]) != found[1]:
                    raise _NotGrouped(m.name)
                labels.add(m.name)
                count += 1
            selectors.append(frozenset(labels))
        return True

    pq.walk(tree, visit)
    if not bound or any(s != set(bound) for s in selectors):
        raise _NotGrouped("selectors bind different labels")
    if template.count("{{") != count:
        raise _NotGrouped("a placeholder outside a matcher")
    _check_without(tree, set(bound))
    return tuple(sorted(bound.items()))


def _check_without(tree: Any, labels: set[str]) -> None:
    def visit(node: Any) -> bool:
        modifier = getattr(node, "modifier", None) if isinstance(node, pq.AggregateExpr) else None
        if modifier is not None and modifier.type == pq.AggModifierType.Without and (
            labels & set(modifier.labels)
        ):
            raise _NotGrouped("without a bound label")
        return True

    pq.walk(tree, visit)


def _print(node: Any, labels: list[str]) -> str:
    """`node` as PromQL with every aggregation grouped by `labels` too."""
    if not _aggregates(node):
        return str(node)
    if isinstance(node, pq.AggregateExpr):
        modifier = node.modifier
        if modifier is not None and modifier.type == pq.AggModifierType.Without:
            grouping = f" without ({', '.join(modifier.labels)})"
        else:
            by = list(modifier.labels) if modifier is not None else []
            grouping = f" by ({', '.join(dict.fromkeys([*by, *labels]))})"
        param = f"{_print(node.param, labels)}, " if node.param is not None else ""
        return f"{node.op}{grouping} ({param}{_print(node.expr, labels)})"
    if isinstance(node, pq.BinaryExpr):
        returns_bool = node.modifier is not None and node.modifier.return_bool
        op = f"{node.op} bool" if returns_bool else str(node.op)
        return f"{_print(node.lhs, labels)} {op} {_print(node.rhs, labels)}"
    if isinstance(node, pq.ParenExpr):
        return f"({_print(node.expr, labels)})"
    if isinstance(node, pq.UnaryExpr):
        return f"-{_print(node.expr, labels)}"
    if isinstance(node, pq.Call):
        return f"{node.func.name}({', '.join(_print(a, labels) for a in node.args)})"
    raise _NotGrouped(type(node).__name__)


def _aggregates(node: Any) -> bool:
    found = False

    def visit(n: Any) -> bool:
        nonlocal found
        found = found or isinstance(n, pq.AggregateExpr)
        return not found

    pq.walk(node, visit)
    return found


def _selected(tree: Any) -> list[str]:
    """What a query selects and computes with, grouping aside: its selectors and
    ranges, numbers and strings, in order."""
    out: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, pq.VectorSelector):
            out.append(repr((node.name, sorted((m.name, str(m.op), m.value)
                                               for m in node.matchers.matchers),
                             node.offset, str(node.at))))
        elif isinstance(node, pq.MatrixSelector):
            out.append(str(node.range))
        elif isinstance(node, pq.NumberLiteral | pq.StringLiteral):
            out.append(repr(node.val))
        return True

    pq.walk(tree, visit)
    return out

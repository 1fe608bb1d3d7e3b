"""The commit of a restore: temporary collections renamed into place, all or nothing.

A restore never writes into a collection the app reads until everything has been checked
and loaded. Each collection of the backup is loaded into a temporary collection of the
target database, `chatops-restore-<token>-<hash of the name>`, indexes included, and
checked against the backup. Only then does the commit replace the targets:

- DropCollections: each target the backup holds is renamed out of the way
  (`chatops-replaced-<token>-<hash>`) and its temporary collection renamed in.
- DropDatabase: the same, and every other collection of the database is moved aside too.
- Merge: a collection the target lacks is renamed in; into one it has, the backup's
  documents whose `_id` is not there yet are inserted (nothing that exists is changed).

The temporary and replaced names are short whatever the collection's name, because
FerretDB renames only within a database and without `dropTarget`, and a name near the
namespace limit has no room for a suffix; they have no dot, since FerretDB 1.24 renames no
collection whose name has one (so on FerretDB a restore of such a collection fails at the
commit and is undone). A failure during the commit undoes the operations done so far in
reverse order (a rename back; the documents a Merge inserted deleted again), so the
target is as it was: for DropDatabase and DropCollections the same collections with the
same documents and indexes; for Merge, the same documents (an index the Merge added to
an existing collection is dropped again). Only after the last rename are the replaced
collections dropped.

An operator killed during the commit leaves replaced collections behind: the next run
sees them and rolls forward (the temporaries were complete and checked before the first
rename), since rolling back would need to know which target existed before. Killed
before the commit, the next run drops its temporaries and loads again.

`operations` is pure; `commit_all` and `roll_forward` run it against a `Server`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

Mode = Literal["DropDatabase", "DropCollections", "Merge"]
TEMP = "chatops-restore"
REPLACED = "chatops-replaced"
Undo = Callable[[], None]


def _hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def temp_name(token: str, name: str) -> str:
    """Where `name` is loaded before the commit."""
    return f"{TEMP}-{token}-{_hash(name)}"


def replaced_name(token: str, name: str) -> str:
    """Where the commit moves the collection `name` had before."""
    return f"{REPLACED}-{token}-{_hash(name)}"


def is_ours(name: str) -> bool:
    """A temporary or replaced collection of some restore (never restored, dumped or
    counted as the app's)."""
    return name.startswith((f"{TEMP}-", f"{REPLACED}-"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """One database's commit. `views` holds the backup's views (name → options): a view
    has no documents and is created at the commit, never renamed."""

    database: str
    token: str
    mode: Mode
    collections: tuple[str, ...]
    views: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    def temps(self) -> dict[str, str]:
        return {temp_name(self.token, n): n for n in self.collections}

    def leftovers(self, present: Mapping[str, object]) -> list[str]:
        """This restore's temporary and replaced collections in `present`."""
        own = (f"{TEMP}-{self.token}-", f"{REPLACED}-{self.token}-")
        return sorted(n for n in present if n.startswith(own))

    def started(self, present: Mapping[str, object]) -> bool:
        """Whether a commit began (and so must be rolled forward): a replaced collection
        of this restore exists."""
        return any(n.startswith(f"{REPLACED}-{self.token}-") for n in present)


@dataclasses.dataclass(frozen=True)
class Rename:
    """Undone by the rename back."""

    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class DropView:
    name: str
    options: Mapping[str, Any]
    """To create it again on undo."""


@dataclasses.dataclass(frozen=True)
class CreateView:
    """Undone by dropping the view."""

    name: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Merge:
    """Insert what `target` lacks of `source`; undone by deleting exactly that."""

    source: str
    target: str


Operation = Rename | DropView | CreateView | Merge


def operations(plan: Plan, present: Mapping[str, Mapping[str, Any] | None]) -> list[Operation]:
    """The commit, given what the database holds now (name → view options, None for a
    collection). Computed again from the database when rolling forward, so an operation
    already done is not asked for again."""
    ops: list[Operation] = []
    aside: list[str] = []
    wanted = {*plan.collections, *plan.views}
    for name, view in sorted(present.items()):
        if is_ours(name):
            continue
        if plan.mode == "DropDatabase":
            goes = True
        elif plan.mode == "DropCollections":
            goes = name in wanted
        else:  # Merge replaces no collection, only a view by the backup's definition
            goes = name in plan.views and view is not None
        if not goes:
            continue
        if view is not None:
            ops.append(DropView(name, view))
        elif name not in plan.collections or temp_name(plan.token, name) in present:
            aside.append(name)  # else: renamed in already, by the commit rolled forward
    ops += [Rename(name, replaced_name(plan.token, name)) for name in aside]
    for name in plan.collections:
        temp = temp_name(plan.token, name)
        if temp not in present:
            continue
        if plan.mode == "Merge" and name in present and present[name] is None:
            ops.append(Merge(temp, name))
        else:
            ops.append(Rename(temp, name))
    for name, options in sorted(plan.views.items()):
        if plan.mode == "Merge" and name in present and present[name] is None:
            continue  # a collection of that name stays; Merge never drops one
        ops.append(CreateView(name, options))
    return ops


class Server(Protocol):
    """What the commit needs of a database (the Mongo adapter; a dict in the tests)."""

    def names(self, database: str) -> dict[str, Mapping[str, Any] | None]:
        """Collections (None) and views (their options) of the database."""
        ...

    def rename(self, database: str, old: str, new: str) -> None: ...

    def drop(self, database: str, name: str) -> None: ...

    def create_view(self, database: str, name: str, options: Mapping[str, Any]) -> None: ...

    def merge(self, database: str, source: str, target: str) -> Undo:
        """Insert the documents of `source` whose `_id` `target` lacks (and its indexes
        `target` lacks); returns what undoes exactly that."""
        ...


class CommitFailed(Exception):
    """The commit failed; `undone` says whether the target is as it was."""

    def __init__(self, cause: BaseException, undone: bool, undo_error: str = "") -> None:
        super().__init__(str(cause))
        self.cause, self.undone, self.undo_error = cause, undone, undo_error


def _apply(server: Server, db: str, op: Operation) -> Undo:
    if isinstance(op, Rename):
        server.rename(db, op.old, op.new)
        return lambda: server.rename(db, op.new, op.old)
    if isinstance(op, DropView):
        server.drop(db, op.name)
        return lambda: server.create_view(db, op.name, op.options)
    if isinstance(op, CreateView):
        server.create_view(db, op.name, op.options)
        return lambda: server.drop(db, op.name)
    return server.merge(db, op.source, op.target)


def commit_all(server: Server, plans: Sequence[Plan]) -> list[str]:
    """Replace the targets of every plan, all or nothing; then drop what was replaced.
    Raises CommitFailed after undoing what it had done, in every database. Returns the
    leftovers it could not drop (the restore still succeeded)."""
    undo: list[Undo] = []
    try:
        for plan in plans:
            for op in operations(plan, server.names(plan.database)):
                undo.append(_apply(server, plan.database, op))
    except BaseException as err:
        problems = []
        for step in reversed(undo):
            try:
                step()
            except Exception as undo_err:  # reported; the other steps are still undone
                problems.append(str(undo_err))
        raise CommitFailed(err, undone=not problems, undo_error="; ".join(problems)) from err
    return [name for plan in plans for name in clean(server, plan)]


def roll_forward(server: Server, plan: Plan) -> list[str]:
    """Finish a commit that an earlier run began (see the module's docstring)."""
    for op in operations(plan, server.names(plan.database)):
        _apply(server, plan.database, op)
    return clean(server, plan)


def clean(server: Server, plan: Plan) -> list[str]:
    """Drop this restore's temporary and replaced collections; the ones that failed."""
    failed = []
    for name in plan.leftovers(server.names(plan.database)):
        try:
            server.drop(plan.database, name)
        except Exception:  # left for the next run; the data is in place
            failed.append(name)
    return failed

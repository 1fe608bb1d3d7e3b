"""The `kubernetes` client's packages, loaded a name at a time.

`import kubernetes.client` runs three generated `__init__.py` files that import every
API class and every model of the Kubernetes API: about 830 modules, some 40 MiB of an
operator whose looks use a dozen of them. `install()` (run by `chatops/__init__.py`,
before anything imports kubernetes) makes `kubernetes.client`, `kubernetes.client.api`
and `kubernetes.client.models` load each of those names on first use instead, as PEP 562
allows: `client.AppsV1Api`, `from kubernetes.client import V1Deployment` and the client's
own `getattr(kubernetes.client.models, "V1Pod")` import the one submodule that defines
the name and give the same object the eager import would.

Only the lines `from kubernetes.client… import Name` of those files are deferred; every
other statement of them runs as written. A package without its `__init__.py` source
(bytecode only) and a process that imported kubernetes before `install()` load eagerly,
as ever.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

PACKAGES = frozenset({"kubernetes.client", "kubernetes.client.api", "kubernetes.client.models"})


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the three packages where Python would, and loads them lazily."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PACKAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return None  # no source to read (bytecode only): Python loads it as ever
        spec.loader = _Loader(spec.origin)
        return spec


class _Loader(importlib.abc.Loader):
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read(), self.origin)
        where: dict[str, tuple[str, str]] = {}  # name -> (module, attribute)
        kept: list[ast.stmt] = []
        for statement in tree.body:
            if _deferrable(statement):
                assert isinstance(statement, ast.ImportFrom) and statement.module
                for alias in statement.names:
                    where[alias.asname or alias.name] = (statement.module, alias.name)
            else:
                kept.append(statement)
        namespace = module.__dict__
        exec(compile(ast.Module(kept, []), self.origin, "exec"), namespace)

        def __getattr__(name: str) -> object:
            if name not in where:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            source_module, attribute = where[name]
            value = getattr(importlib.import_module(source_module), attribute)
            namespace[name] = value  # found once; later lookups do not come here
            return value

        def __dir__() -> list[str]:
            return sorted({*namespace, *where})

        namespace["__getattr__"] = __getattr__
        namespace["__dir__"] = __dir__
        namespace["__lazy__"] = where


def _deferrable(statement: ast.stmt) -> bool:
    """`from kubernetes.client.<something> import Name, …` (no star)."""
    return (
        isinstance(statement, ast.ImportFrom)
        and statement.level == 0
        and statement.module is not None
        and statement.module.startswith("kubernetes.client.")
        and all(alias.name != "*" for alias in statement.names)
    )


def install() -> bool:
    """Load the three packages lazily from now on; False when kubernetes.client was
    already imported (eagerly, for good) or it is installed already."""
    if "kubernetes.client" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _Finder())
    return True

"""chatops loads the kubernetes client's models and APIs a name at a time
(`chatops/lazykube.py`): every name must still be there and be the same class the eager
import gives, and importing the client must no longer load the ~800 model modules."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PACKAGES = ("kubernetes.client", "kubernetes.client.api", "kubernetes.client.models")


def _python(code: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_every_name_is_the_class_the_eager_import_gives() -> None:
    # Not importing chatops: the client as its own __init__ files load it.
    eager = _python(
        f"""
        import importlib, json
        out = {{}}
        for package in {PACKAGES!r}:
            module = importlib.import_module(package)
            out[package] = {{
                name: f"{{value.__module__}}.{{value.__qualname__}}"
                for name, value in vars(module).items()
                if isinstance(value, type) and not name.startswith("_")
            }}
        print(json.dumps(out))
        """
    )
    lazy = _python(
        f"""
        import chatops, importlib, json, sys
        import kubernetes.client
        loaded = sum(m.startswith("kubernetes.client.models.") for m in sys.modules)
        out = {{"models loaded by the import": loaded}}
        for package in {PACKAGES!r}:
            module = importlib.import_module(package)
            out[package] = {{
                name: f"{{value.__module__}}.{{value.__qualname__}}"
                for name in dir(module)
                if not name.startswith("_")
                and isinstance(value := getattr(module, name), type)
            }}
        print(json.dumps(out))
        """
    )
    assert isinstance(eager, dict) and isinstance(lazy, dict)
    assert lazy.pop("models loaded by the import") < 20
    for package in PACKAGES:
        assert len(eager[package]) > 60  # the eager import did load them all
        assert lazy[package] == eager[package], package


def test_the_client_finds_models_by_name_and_raises_for_missing_ones() -> None:
    found = _python(
        """
        import chatops, json
        from kubernetes import client
        from kubernetes.client import V1ObjectMeta
        api = client.ApiClient()
        body = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {},
                "template": {}}}
        deployment = api._ApiClient__deserialize(body, "V1Deployment")
        try:
            client.NoSuchThing
            missing = "no error"
        except AttributeError as err:
            missing = str(err)
        print(json.dumps({
            "type": type(deployment).__name__,
            "meta": isinstance(deployment.metadata, V1ObjectMeta),
            "replicas": deployment.spec.replicas,
            "missing": missing,
            "version": client.__version__,
        }))
        """
    )
    assert isinstance(found, dict)
    assert found["type"] == "V1Deployment" and found["meta"] and found["replicas"] == 2
    assert "NoSuchThing" in found["missing"]
    assert found["version"]

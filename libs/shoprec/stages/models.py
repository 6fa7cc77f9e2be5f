"""Registered models, resolved for a cutoff: the version of the serving hybrid that may serve as_of."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from datetime import date
from typing import TYPE_CHECKING

import yaml

from shoprec.errors import ShoprecError
from shoprec.hybrid import pyfunc
from shoprec.hybrid.serving import ServingModel
from shoprec.registry import version_for

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)


def resolve(name: str, alias: str, cache_root: str, as_of: date) -> ServingModel | None:
    """The version of ``name`` that serves ``as_of``, downloaded: the one behind ``alias``,
    never one trained on later data (``registry.version_for``); None when there is none."""
    import mlflow

    version, note = version_for(name, alias, as_of.isoformat())
    if version is None:
        log.warning("no serving model: %s", note)
        return None
    if note:
        log.warning("%s", note)
    folder = os.path.join(os.path.abspath(cache_root), _folder_name(name, version))
    problem = _cached_copy_problem(folder, version)
    if problem is not None:
        if os.path.exists(folder):
            log.warning("cached %s v%s at %s %s: downloading it again", name, version.version, folder, problem)
            shutil.rmtree(folder)
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version.version}", dst_path=folder)
        if _run_id(folder) != version.run_id:
            raise ShoprecError(
                f"{name} v{version.version} downloaded from the registry names run {_run_id(folder)}, "
                f"but the registry says run {version.run_id}",
                hint="the registry's version points at another run's artifacts: check it in the MLflow UI",
            )
        _write_json(os.path.join(folder, _DOWNLOADED), {"run_id": version.run_id, "sha256": _digest(folder)})
    with open(os.path.join(folder, "MLmodel")) as fh:
        artifacts = yaml.safe_load(fh)["flavors"]["python_function"]["artifacts"]
    return ServingModel(
        name,
        str(version.version),
        alias,
        folder,
        os.path.join(folder, artifacts[pyfunc.KERAS_MODEL]["path"]),
        os.path.join(folder, artifacts[pyfunc.MANIFEST]["path"]),
        note,
    )


# Written into a downloaded copy: the run it came from and the digest of its files then.
_DOWNLOADED = ".shoprec-downloaded.json"


def _cached_copy_problem(folder: str, version: ModelVersion) -> str | None:
    """Why the copy under ``folder`` may not serve ``version`` (None: it may): a model is
    loaded from local disk, and a copy that is not the registered version's artifact (another
    run's, half written, edited since) must not score."""
    if not os.path.exists(os.path.join(folder, "MLmodel")):
        return "is missing" if not os.path.exists(folder) else "has no MLmodel"
    try:
        with open(os.path.join(folder, _DOWNLOADED)) as fh:
            recorded = json.load(fh)
    except (OSError, ValueError):
        return "has no download record"
    if _run_id(folder) != version.run_id or recorded.get("run_id") != version.run_id:
        return f"is run {_run_id(folder)}'s model, not the registered run {version.run_id}'s"
    if recorded.get("sha256") != _digest(folder):
        return "was changed since it was downloaded (its files' digest differs)"
    return None


def _run_id(folder: str) -> str | None:
    with open(os.path.join(folder, "MLmodel")) as fh:
        return (yaml.safe_load(fh) or {}).get("run_id")


def _digest(folder: str) -> str:
    """sha256 over every file's relative path and bytes (the download record left out)."""
    h = hashlib.sha256()
    for base, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")  # Python's own, written on import
        for name in sorted(files):
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder)
            if rel == _DOWNLOADED:
                continue
            h.update(rel.encode() + b"\0")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _write_json(path: str, data: dict) -> None:
    with open(path + ".tmp", "w") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)


def _folder_name(name: str, version: ModelVersion) -> str:
    """``<name>-v<n>-<digest>``: the digest tells apart version n of two registries.

    Executors keep shipped folders by their base name for the whole Spark application, and
    Spark refuses a second folder under a name it already holds with other contents. One
    long-lived session can serve models from several registries (a notebook pointed at two
    data roots, the test suite), and each starts counting versions at 1.
    """
    import mlflow

    identity = "|".join(
        str(x) for x in (mlflow.get_registry_uri(), name, version.version, version.run_id, version.creation_timestamp)
    )
    return f"{name}-v{version.version}-{hashlib.sha1(identity.encode()).hexdigest()[:10]}"

"""The versioned model registry: ``<root>/<task>/vNNNN/{model.onnx, manifest.json}``.

``<root>/<task>/state.json`` says which version serves and the history of serving versions
(for rollback). Every write is atomic: a version is staged in a hidden directory and renamed
into place; the state file is written to a temporary file, fsynced, then ``os.replace``d.
The registry never talks to Kafka: promote and rollback return the manifest, and the caller
announces it. Promote and rollback load (and so checksum) the target first: a corrupt file
is refused and the version serving before keeps serving.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillery.errors import ModelError, RegistryError
from distillery.settings import Settings
from models.stage import (
    MANIFEST_FILE,
    MODEL_FILE,
    Stage,
    read_manifest,
    sha256_of,
    verify_version,
)

STATE_FILE = "state.json"
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class Manifest:
    task: str
    version: str
    directory: Path
    sha256: str
    labels: list[str]
    data: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def uri(self) -> str:
        return self.model_path.resolve().as_uri()

    @property
    def parent(self) -> str | None:
        parent = self.data.get("parent")
        return str(parent) if parent else None

    @property
    def metrics(self) -> dict[str, float]:
        """For announcements: accuracy, macro_f1, ``recall:<label>`` per critical label, and
        the system figures on the held-out verdicts — coverage, decided_accuracy,
        system_accuracy and ``catch:<label>`` per critical label (where it has items)."""
        report = self.data.get("report", {})
        out = {k: float(report[k]) for k in ("accuracy", "macro_f1") if k in report}
        for label, recall in report.get("critical_recall", {}).items():
            out[f"recall:{label}"] = float(recall)
        system = self.data.get("system") or {}
        for key in ("coverage", "decided_accuracy", "system_accuracy"):
            if system.get(key) is not None:
                out[key] = float(system[key])
        for label, catch in (system.get("catch_rate") or {}).items():
            if catch is not None:
                out[f"catch:{label}"] = float(catch)
        return out


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Registry:
    def __init__(self, root: Path | str, keep: int = 5) -> None:
        self.root = Path(root)
        self.keep = keep

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        return cls(settings.registry_root, keep=settings.registry_keep)

    # --- reading ------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (
            (p / STATE_FILE).is_file() or self.versions(p.name)))

    def versions(self, task: str) -> list[str]:
        folder = self.root / task
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name)
                 and (p / MANIFEST_FILE).is_file()]
        return sorted(found, key=lambda v: int(v[1:]))

    def manifests(self, task: str) -> list[Manifest]:
        """Every stored version's manifest, oldest first."""
        return [self.show(task, v) for v in self.versions(task)]

    def show(self, task: str, version: str | None = None) -> Manifest:
        """A version's manifest; ``None`` means the serving version."""
        if version is None:
            serving = self.serving(task)
            if serving is None:
                raise RegistryError(f"no version of task {task} serves yet")
            return serving
        directory = self.root / task / version
        if not (directory / MANIFEST_FILE).is_file():
            raise RegistryError(f"task {task} has no version {version}; "
                                f"known: {', '.join(self.versions(task)) or 'none'}")
        try:
            data = read_manifest(directory)
            return Manifest(task, version, directory, str(data["sha256"]),
                            [str(x) for x in data["labels"]], data)
        except (ModelError, KeyError) as exc:
            raise RegistryError(f"manifest of {task} {version} is unreadable: {exc}") from exc

    def state(self, task: str) -> dict[str, Any]:
        path = self.root / task / STATE_FILE
        if not path.is_file():
            return {"serving": None, "history": []}
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} is not valid JSON: {exc.msg}") from exc

    def serving(self, task: str) -> Manifest | None:
        version = self.state(task).get("serving")
        return self.show(task, version) if version else None

    def load_student(self, task: str, version: str | None = None, threads: int = 1) -> Stage:
        """The serving (or the given) version, checksummed against its manifest."""
        manifest = self.show(task, version)
        return Stage.load(manifest.directory, expected_sha256=manifest.sha256,
                          threads=threads)

    # --- writing ------------------------------------------------------------------------
    def publish(self, task: str, model: bytes, manifest: dict[str, Any]) -> Manifest:
        """Store a new version (not serving yet) and return its manifest."""
        folder = self.root / task
        folder.mkdir(parents=True, exist_ok=True)
        sweep_stale(folder, ".staging-")
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            _fsync_write(staging / MODEL_FILE, model)
            parent = self.state(task).get("serving")
            for _attempt in range(20):
                existing = self.versions(task)
                version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
                data = {**manifest, "task": task, "version": version,
                        "sha256": sha256_of(model), "parent": parent, "created_at": _now()}
                _fsync_write(staging / MANIFEST_FILE,
                             json.dumps(data, indent=2, sort_keys=False).encode("utf-8"))
                try:
                    os.rename(staging, folder / version)  # fails if another writer took it
                except OSError:
                    continue
                return self.show(task, version)
            raise RegistryError(f"could not allocate a version number for task {task}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def promote(self, task: str, version: str) -> Manifest:
        """Make ``version`` the serving one (after verifying its file and manifest, whatever
        the stage: ``models.stage.verify_version``); return its manifest."""
        manifest = self.show(task, version)
        verify_version(manifest.directory, manifest.sha256)  # refuse bad files
        state = self.state(task)
        if state.get("serving") != version:
            history = [*state.get("history", []), version]
            self._write_state(task, version, history, "promote")
        return manifest

    def rollback(self, task: str) -> Manifest:
        """Serve the version that served before the current one; return its manifest."""
        history = list(self.state(task).get("history", []))
        if len(history) < 2:
            raise RegistryError(f"task {task} has no earlier serving version to roll back to")
        history.pop()
        previous = history[-1]
        manifest = self.show(task, previous)
        verify_version(manifest.directory, manifest.sha256)
        self._write_state(task, previous, history, "rollback")
        return manifest

    def prune(self, task: str, keep: int | None = None,
              before_remove: Callable[[str, Path], object] | None = None) -> list[str]:
        """Delete versions other than the serving one, the one a rollback would return to,
        and the newest ``keep`` (default: the registry's ``keep``). Returns the deleted.
        ``before_remove(version, directory)`` runs before each folder goes (e.g. to
        tombstone the version's bytes on Kafka)."""
        keep = self.keep if keep is None else keep
        if keep < 0:
            raise RegistryError("prune needs keep >= 0")
        versions = self.versions(task)
        state = self.state(task)
        history = list(state.get("history", []))
        protected: set[str] = set(versions[len(versions) - keep:]) if keep else set()
        protected |= {str(v) for v in [state.get("serving"), *history[-2:]] if v}
        removed = [v for v in versions if v not in protected]
        for version in removed:
            if before_remove is not None:
                before_remove(version, self.root / task / version)
            shutil.rmtree(self.root / task / version)
        if removed and state.get("serving"):
            kept = [v for v in history if v not in removed]
            self._write_state(task, state["serving"], kept, "prune")
        return removed

    def _write_state(self, task: str, serving: str, history: list[str], action: str) -> None:
        state = {"serving": serving, "history": history, "action": action, "updated_at": _now()}
        write_atomic(self.root / task / STATE_FILE, json.dumps(state, indent=2))


STALE_S = 3600.0  # a staging folder this old was left by a writer that died (SIGKILL)


def sweep_stale(folder: Path, prefix: str, older_than_s: float = STALE_S) -> list[Path]:
    """Remove ``<folder>/<prefix>*`` folders not touched for ``older_than_s``: what a
    writer killed mid-publish (or mid-fetch) left. A live writer's folder is newer."""
    import time

    removed = []
    for path in folder.glob(f"{prefix}*"):
        try:
            if path.is_dir() and time.time() - path.stat().st_mtime > older_than_s:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        except OSError:
            continue
    return removed

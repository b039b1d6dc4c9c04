"""The versioned model registry: ``<root>/<task>/vNNNN/{model.onnx, manifest.json}``.

``<root>/<task>/state.json`` says which version serves and the history of serving versions
(for rollback). Every write is atomic (a temporary file, then ``os.replace``). The registry
never talks to Kafka: promote and rollback return the manifest, and the caller announces it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distillery.errors import RegistryError
from models.runtime import MANIFEST_FILE, MODEL_FILE, Student, read_manifest, sha256_of

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
    def metrics(self) -> dict[str, float]:
        """accuracy, macro_f1 and ``recall:<label>`` per critical label (for announcements)."""
        report = self.data.get("report", {})
        out = {k: float(report[k]) for k in ("accuracy", "macro_f1") if k in report}
        for label, recall in report.get("critical_recall", {}).items():
            out[f"recall:{label}"] = float(recall)
        return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- reading ------------------------------------------------------------------------
    def versions(self, task: str) -> list[str]:
        folder = self.root / task
        if not folder.is_dir():
            return []
        found = [p.name for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name)
                 and (p / MANIFEST_FILE).is_file()]
        return sorted(found, key=lambda v: int(v[1:]))

    def tasks(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").is_file()
                      or self.versions(p.name))

    def show(self, task: str, version: str) -> Manifest:
        directory = self.root / task / version
        if not (directory / MANIFEST_FILE).is_file():
            raise RegistryError(f"task {task} has no version {version}; "
                                f"known: {', '.join(self.versions(task)) or 'none'}")
        data = read_manifest(directory)
        return Manifest(task, version, directory, data["sha256"], list(data["labels"]), data)

    def state(self, task: str) -> dict[str, Any]:
        path = self.root / task / "state.json"
        if not path.is_file():
            return {"serving": None, "history": []}
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def serving(self, task: str) -> Manifest | None:
        version = self.state(task).get("serving")
        return self.show(task, version) if version else None

    def load_student(self, task: str, version: str | None = None, threads: int = 1) -> Student:
        manifest = self.show(task, version) if version else self.serving(task)
        if manifest is None:
            raise RegistryError(f"no version of task {task} serves yet")
        return Student.load(manifest.directory, expected_sha256=manifest.sha256,
                            threads=threads)

    # --- writing ------------------------------------------------------------------------
    def publish(self, task: str, model: bytes, manifest: dict[str, Any]) -> Manifest:
        """Store a new version (not serving yet) and return its manifest."""
        folder = self.root / task
        folder.mkdir(parents=True, exist_ok=True)
        existing = self.versions(task)
        number = int(existing[-1][1:]) + 1 if existing else 1
        version = f"v{number:04d}"
        staging = folder / f".{version}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        (staging / MODEL_FILE).write_bytes(model)
        data = {
            **manifest, "task": task, "version": version, "sha256": sha256_of(model),
            "parent": self.state(task).get("serving"),
            "created_at": datetime.now(UTC).isoformat(),
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(staging, folder / version)
        return self.show(task, version)

    def promote(self, task: str, version: str) -> Manifest:
        manifest = self.show(task, version)
        Student.load(manifest.directory, expected_sha256=manifest.sha256)  # refuse bad files
        state = self.state(task)
        if state.get("serving") != version:
            state["history"] = [*state.get("history", []), version]
            state["serving"] = version
            _write_atomic(self.root / task / "state.json", json.dumps(state, indent=2))
        return manifest

    def rollback(self, task: str) -> Manifest:
        """Serve the version that served before the current one."""
        state = self.state(task)
        history = list(state.get("history", []))
        if len(history) < 2:
            raise RegistryError(f"task {task} has no earlier serving version to roll back to")
        history.pop()
        previous = history[-1]
        manifest = self.show(task, previous)
        Student.load(manifest.directory, expected_sha256=manifest.sha256)
        _write_atomic(self.root / task / "state.json",
                      json.dumps({"serving": previous, "history": history}, indent=2))
        return manifest

    def prune(self, task: str, keep: int) -> list[str]:
        """Delete versions other than the serving one and the newest ``keep``."""
        versions = self.versions(task)
        protected = set(versions[-keep:]) | {self.state(task).get("serving")}
        removed = [v for v in versions if v not in protected]
        for version in removed:
            shutil.rmtree(self.root / task / version)
        return removed

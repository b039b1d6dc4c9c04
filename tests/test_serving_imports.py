"""Serving stays small: the classify, refine (tier 2) and teacher workers (and the CLI's
start-up) import no torch and no ONNX exporter — torch is for training only (the ``train``
extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys
import streams.app, streams.hotswap, workers.teacher.worker, workers.cli.main, models
import streams.refine, models.stage, models.embed.encoder
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'onnxscript'})
print(','.join(heavy))
"""


def test_serving_workers_import_no_torch() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "", f"serving imported {done.stdout.strip()}"

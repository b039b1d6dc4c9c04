"""Tier 2 of the cascade: sentence embeddings (all-MiniLM-L6-v2 in onnxruntime) and a small
head trained on the same verdicts as tier 1. No Kafka, and no torch when serving.
"""

from __future__ import annotations

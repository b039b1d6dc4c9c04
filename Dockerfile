# The distillery images, for docker-compose users. Untested on the project's own machines,
# which have no Docker engine; see the README.
#
#   docker build --target serving -t distillery:serving .   # classify + teacher workers, CLI
#   docker build --target trainer -t distillery:trainer .   # + torch, for the trainer worker
#
# The serving image has no torch: the classify and teacher workers only run onnxruntime
# (tests/test_serving_imports.py checks that they import none of it).
FROM python:3.11-slim AS serving
WORKDIR /app
COPY pyproject.toml README.md ./
COPY distillery distillery
COPY schemas schemas
COPY models models
COPY streams streams
COPY workers workers
RUN pip install --no-cache-dir .
ENTRYPOINT ["distillery"]

FROM serving AS trainer
# torch's CPU build keeps the image small where its index is reachable; PyPI's default
# build also runs on the CPU. Override with --build-arg TORCH_INDEX=... .
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX" torch \
    || pip install --no-cache-dir torch
RUN pip install --no-cache-dir ".[train]"

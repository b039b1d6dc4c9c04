# The distillery workers, for docker-compose users. Untested on the project's own machines,
# which have no Docker engine; see the README.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY distillery distillery
COPY schemas schemas
COPY models models
COPY streams streams
COPY workers workers
RUN pip install --no-cache-dir .
ENTRYPOINT ["distillery"]

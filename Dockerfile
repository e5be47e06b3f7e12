# syntax=docker/dockerfile:1
# jwksd as a sidecar image: docs/operations.md, "Docker". Build: docker build -t jwksd .
# Runs as an unprivileged numeric user with a read-only root filesystem: the only place it writes
# is JWKSD_STATE_DIR (a volume or a tmpfs).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY jwksd ./jwksd
# The wheel of jwksd and of everything it needs, so the final stage installs without a network.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
# The wheels are mounted for the install only: none of them stays in a layer.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels jwksd \
    && install -d -o 65532 -g 65532 -m 0700 /var/lib/jwksd

# Inside the container's own network namespace; publish the ports to choose who reaches them.
ENV JWKSD_LISTEN=0.0.0.0:8080 \
    JWKSD_METRICS_LISTEN=0.0.0.0:9464 \
    JWKSD_STATE_DIR=/var/lib/jwksd \
    JWKSD_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 65532:65532
VOLUME ["/var/lib/jwksd"]
EXPOSE 8080 9464
STOPSIGNAL SIGTERM
# 200 once a valid key set is served (fresh, stale, last-known-good or fallback); staleness never fails it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['JWKSD_LISTEN'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2)"]
ENTRYPOINT ["jwksd"]
CMD ["serve"]

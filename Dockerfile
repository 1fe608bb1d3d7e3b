# syntax=docker/dockerfile:1
# The chatops operator image.
#
#   docker build -t chatops:dev .
#   docker run --rm -v ~/.kube:/tmp/.kube:ro -e KUBECONFIG=/tmp/.kube/config chatops:dev
#
# Runs as uid 10001 with a read-only root filesystem: it writes nothing outside /tmp
# (mount an emptyDir there; backups spool at most one compressed collection into it).

ARG PYTHON_IMAGE=python:3.11-slim

# -- builder: the wheel, installed with its dependencies into a venv ---------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/chatops \
 && /opt/chatops/bin/pip install /dist/chatops-*.whl \
 && /opt/chatops/bin/python -m compileall -q /opt/chatops/lib \
 && /opt/chatops/bin/chatops --help > /dev/null

# -- final: the venv on a clean slim Python, as a non-root user --------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="chatops" \
      org.opencontainers.image.description="Kubernetes operator for the day-2 operations of a real-time chat app" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 chatops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
      --shell /usr/sbin/nologin chatops
COPY --from=builder /opt/chatops /opt/chatops
ENV PATH=/opt/chatops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["chatops"]
CMD ["run", "--metrics-port", "8080", "--leader-elect", "--log-format", "json"]

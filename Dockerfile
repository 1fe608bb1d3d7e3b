# syntax=docker/dockerfile:1
# The chatops operator image.
#
#   make image        # Docker when an engine runs, else buildah on a local base (README)
#   docker build -t chatops:0.1.0 .
#   docker run --rm -v ~/.kube:/tmp/.kube:ro -e KUBECONFIG=/tmp/.kube/config chatops:0.1.0
#
# Runs as uid 10001 with a read-only root filesystem: it writes nothing outside /tmp
# (mount an emptyDir there; backups spool at most one compressed collection into it).
# The final stage is the base's Python and the venv, nothing more. What a run never reads
# is left out: pip and setuptools, the packages' tests, the kubernetes client's asyncio
# copy (chatops and kopf use neither), botocore's models of services chatops never calls
# (it calls S3, and STS/SSO for the credential chain: IRSA, SSO profiles), and the source
# of the kubernetes client's generated API and models (20 MB read only to print a
# traceback: their bytecode is there, a traceback names file and line; their two
# `__init__.py` stay, which chatops/lazykube.py reads to load them lazily). Every module is
# compiled at build time: the read-only root keeps a run from caching bytecode.

ARG PYTHON_IMAGE=python:3.11-slim

# -- builder: the package and its dependencies in a venv, trimmed ----------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator ./operator
# README.md is only the wheel's long description: an empty one keeps an edit of the README
# from rebuilding the image (make image's cache is keyed by what the build copies).
RUN touch README.md \
 && python3 -m venv /opt/chatops \
 && /opt/chatops/bin/pip install --no-compile . \
 && /opt/chatops/bin/pip uninstall -y -q pip setuptools \
 && site=$(/opt/chatops/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && rm -rf "$site/kubernetes/aio" "$site"/*/tests \
 && for service in "$site"/botocore/data/*/; do \
      case $(basename "$service") in s3|sts|sso|sso-oidc|signin) ;; *) rm -rf "$service" ;; esac; \
    done \
 && find /opt/chatops -depth -name __pycache__ -exec rm -rf {} + \
 && generated="$site/kubernetes/client/api $site/kubernetes/client/models" \
 && /opt/chatops/bin/python -m compileall -q -j 0 -b $generated \
 && find $generated -name '*.py' ! -name __init__.py -delete \
 && /opt/chatops/bin/python -m compileall -q -j 0 /opt/chatops/lib \
 && /opt/chatops/bin/chatops --version \
 && echo 'chatops:x:10001:10001:chatops operator:/tmp:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'chatops:x:10001:' >> /etc/group

# -- final: the venv on the same Python, as a non-root user; no shell step at all --------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="chatops" \
      org.opencontainers.image.description="Kubernetes operator for the day-2 operations of a real-time chat app" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /etc/passwd /etc/group /etc/
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

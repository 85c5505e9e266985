# ckptwatch as a sidecar: mount the training job's checkpoint volume at /ckpt and
# your listeners at /etc/ckptwatch/listeners.d (they replace the examples there):
#   docker build -t ckptwatch .
#   docker run --rm -v ckpt:/ckpt -v ./listeners.d:/etc/ckptwatch/listeners.d:ro ckptwatch
# runs `ckptwatch run /ckpt` as uid 10001 (gid 10001), with its journal in
# /var/lib/ckptwatch ($CKPTWATCH_STATE_DIR). docs/container.md has the rest.
#
# The base is an argument so that a locally built image can stand in for
# python:3.12-slim (tests/container/setup.sh builds from a debootstrapped one).
ARG BASE=python:3.12-slim

# The venv is built in a stage of its own: the sources, pip's build directories
# and setuptools stay behind; only /opt/ckptwatch is copied out.
FROM ${BASE} AS build
# Extras to install: metrics (prometheus-client); s3, gcs where they exist.
ARG EXTRAS=metrics
# A CA bundle for pip behind a TLS proxy (mount it with -v at build time);
# this stage's only, never in the image.
ARG PIP_CERT
# A venv works the same whether the base calls its Python "python" or "python3".
RUN "$(command -v python3 || command -v python)" -m venv /opt/ckptwatch
COPY pyproject.toml README.md /src/
COPY ckptwatch /src/ckptwatch
RUN /opt/ckptwatch/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile "/src[${EXTRAS}]" \
    && /opt/ckptwatch/bin/pip uninstall --yes --disable-pip-version-check setuptools \
    && /opt/ckptwatch/bin/python -m compileall -q /opt/ckptwatch/lib

FROM ${BASE}
LABEL org.opencontainers.image.title="ckptwatch" \
      org.opencontainers.image.description="Run listeners on each checkpoint save of a training job, and stop it on request" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/ckptwatch /opt/ckptwatch
# The fixed user: 10001:10001, numeric so that Kubernetes' runAsNonRoot can
# check it; `--user UID:GID` (runAsUser) overrides it. /ckpt is group-writable
# (setgid), so that a volume first mounted there is shared with group 10001;
# the state directory is sticky and open to all, like /tmp, so that any uid
# given with --user keeps its journal there.
RUN echo 'ckptwatch:x:10001:10001:ckptwatch:/var/lib/ckptwatch:/usr/sbin/nologin' >>/etc/passwd \
    && echo 'ckptwatch:x:10001:' >>/etc/group \
    && mkdir -p /ckpt /var/lib/ckptwatch \
    && chown 10001:10001 /ckpt /var/lib/ckptwatch \
    && chmod 2775 /ckpt && chmod 1777 /var/lib/ckptwatch
# The example listeners sit where yours are mounted; ./listeners.d and
# ./ckptwatch.toml (mount one, optional) are ckptwatch's defaults. The example
# training loop serves the demos in deploy/.
COPY listeners.d /etc/ckptwatch/listeners.d
COPY examples/train.py /usr/share/ckptwatch/examples/train.py
WORKDIR /etc/ckptwatch
# The state directory through the environment, so that `ckptwatch status` in
# the health check reads the journal that `run` writes; set
# CKPTWATCH_STATE_DIR (not --state-dir) to move it.
ENV PATH=/opt/ckptwatch/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CKPTWATCH_STATE_DIR=/var/lib/ckptwatch
USER 10001:10001
# Healthy: a watcher runs and nothing is stale (--stale-after); asks ckptwatch, not ps.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["ckptwatch", "status"]
# ckptwatch is fine as PID 1: SIGTERM (docker stop, a pod's end) lets queued
# listener runs finish for --shutdown-timeout (20 s), fires `end` and exits 0;
# it reaps orphans without losing its listeners' exit statuses.
ENTRYPOINT ["ckptwatch"]
CMD ["run", "/ckpt"]

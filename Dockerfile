# ckptwatch as a sidecar: mount the training job's checkpoint volume at /ckpt and
# your listeners at /listeners.d, and run next to the training container.
#   docker build -t ckptwatch .
#   docker run --rm -v ckpt:/ckpt -v ./listeners.d:/listeners.d:ro ckptwatch run /ckpt -l /listeners.d
# The base is an argument so that a locally built image can stand in for python:3.12-slim.
ARG BASE=python:3.12-slim
FROM ${BASE}

# A venv works the same whether the base calls its Python "python" or "python3".
RUN (command -v python3 || command -v python) >/tmp/py && "$(cat /tmp/py)" -m venv /opt/ckptwatch && rm /tmp/py
ENV PATH=/opt/ckptwatch/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY ckptwatch ./ckptwatch
RUN pip install --no-cache-dir . && rm -rf /src
COPY listeners.d /usr/share/ckptwatch/listeners.d
WORKDIR /

# ckptwatch is fine as PID 1: it forwards signals, fires `end` on SIGTERM and
# reaps orphans without losing its listeners' exit statuses.
ENTRYPOINT ["ckptwatch"]
CMD ["--help"]

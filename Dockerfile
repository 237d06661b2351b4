# syntax=docker/dockerfile:1
# tickcast: `docker build -t tickcast .`, then `docker run -p 8000:8000 tickcast`.
# compose.yaml runs two of these behind nginx, sharing one upstream through Redis.

# Build stage: install the package and its dependencies into a virtual environment.
# uvloop, httptools, orjson and the other compiled dependencies come as wheels, so no
# compiler is needed.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/tickcast
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src/ ./src/
RUN /opt/tickcast/bin/pip install .

# Runtime stage: the same base image (the venv's interpreter path must match), the venv,
# and an unprivileged user.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/tickcast/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TICKCAST_HOST=0.0.0.0
RUN groupadd --system --gid 10001 tickcast \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin tickcast
COPY --from=build /opt/tickcast /opt/tickcast
# Fail the build, rather than run slower, if the fast write path (uvloop, httptools and the
# tested uvicorn release) is not available: `tickcast serve` would log "write path: portable".
RUN python -c "import sys, uvloop, httptools; from tickcast.edge.fastpath import fast_path_problem; sys.exit(fast_path_problem())" \
    && tickcast serve --help > /dev/null
# An empty working directory: settings come from the environment, not from a .env file.
WORKDIR /srv/tickcast
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TICKCAST_PORT', '8000'), timeout=3)"]
CMD ["tickcast", "serve"]

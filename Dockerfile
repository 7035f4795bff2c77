# natflow operator image.
#
#   docker build -t ghcr.io/natflow/natflow:0.1.0 .
#
# Build stage: install the runtime lock (requirements/runtime.txt, hashes checked) into a virtualenv,
# then compile natflow's C line scanner and install natflow on top; the compiler stays in this stage.
# Runtime stage: the same base image (same Python path, so the venv's scripts work), the venv,
# and a non-root user. .dockerignore is an allow-list: only pyproject.toml, setup.py, README.md,
# requirements/ and the operator/ source root reach the build.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/natflow
WORKDIR /src
COPY . .
RUN /opt/natflow/bin/pip install --require-hashes --no-deps -r requirements/runtime.txt \
 && /opt/natflow/bin/pip install --no-deps --no-build-isolation . \
 && /opt/natflow/bin/natflow --help >/dev/null

FROM python:3.11-slim
# uid/gid 65532, as runAsUser in manifests/deployment.yaml; /var/lib/natflow holds the state
# (a PersistentVolumeClaim in the Deployment), /tmp is an emptyDir there (read-only root).
RUN groupadd --gid 65532 natflow \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin natflow \
 && install -d -o 65532 -g 65532 /var/lib/natflow
COPY --from=build /opt/natflow /opt/natflow
ENV PATH=/opt/natflow/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    NATFLOW_STORE=/var/lib/natflow/state.sqlite
USER 65532:65532
WORKDIR /var/lib/natflow
EXPOSE 8080
ENTRYPOINT ["natflow"]
CMD ["run"]

# syntax=docker/dockerfile:1
#
# The pinning-hook sidecar image. Build and push it with:
#   docker build -t REGISTRY/pinning-hook:0.1.0 .
#   docker push REGISTRY/pinning-hook:0.1.0
# BuildKit (the default builder since Docker 23) is needed for the bind
# mount in the runtime stage.
#
# tests/test_image.py runs what this file describes without a container
# engine: it builds the wheel from the files the build stage copies, installs
# it into a fresh virtual environment, and starts the ENTRYPOINT as the USER
# below, with the ENV below, on a read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: the wheel, with the gRPC stubs that setup.py generates from
# proto/, plus wheels of the runtime dependencies. On x86_64 PyPI has binary
# wheels of all of them, so nothing is compiled.
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proto proto
COPY pinning_hook pinning_hook
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: the slim Python image, no compilers, and only the wheels
# installed. pip compiles the bytecode at install time, so nothing needs to
# be written at run time.
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels pinning-hook
# The uid and gid KubeVirt runs non-root virt-launcher pods and their
# sidecars with. The sidecar writes only its socket, into the hooks
# directory that KubeVirt mounts at /var/run/kubevirt-hooks, so the root
# filesystem may be mounted read-only.
USER 107:107
# KubeVirt appends the hookSidecars "args", such as --version v1alpha3.
ENTRYPOINT ["pinning-hook", "serve"]

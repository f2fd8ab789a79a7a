# syntax=docker/dockerfile:1
#
# Stage "builder": every artifact, built reproducibly on Amazon Linux 2023 (build on an arm64
# machine for the arm64 binary): the Python layer zips for both architectures and the
# self-contained binary layer for the builder's own.
#   docker build --target artifacts --output type=local,dest=dist .
# Final stage: a small image running the daemon as a sidecar.
#   docker build -t parameters-secrets-sidecar .

FROM public.ecr.aws/amazonlinux/amazonlinux:2023 AS builder
ARG PYTHON_VERSIONS=3.11,3.12,3.13
# Versions come from the pinned AL2023 release of the base image; the Python packages are
# pinned by constraints.txt.
# hadolint ignore=DL3041
RUN dnf install -y --setopt=install_weak_deps=False \
        python3.11 python3.11-pip python3.11-devel python3.12 python3.13 \
        binutils gcc findutils glibc-common \
    && dnf clean all
WORKDIR /src
# Exactly what the builds read (tests/test_dockerfile.py builds from these files alone).
COPY constraints.txt ./
COPY sidecar ./sidecar
COPY layer ./layer
COPY scripts ./scripts
COPY client/sidecar_client ./client/sidecar_client
RUN python3.11 -m venv /venv \
    && /venv/bin/pip install --no-cache-dir -c constraints.txt aiohttp aiobotocore cachetools uvloop
ENV BINARY_BUILD_PYTHON=/usr/bin/python3.11
RUN /venv/bin/python scripts/build_layer.py --arch all --python-versions "$PYTHON_VERSIONS" \
    && /venv/bin/python scripts/build_layer.py --binary

FROM scratch AS artifacts
COPY --from=builder /src/dist/ /

FROM public.ecr.aws/amazonlinux/amazonlinux:2023-minimal AS sidecar
# The binary layer's tree, as Lambda unpacks it: it runs in place (bundled C library and loader),
# so the root filesystem may be read-only and /tmp absent; nothing is unpacked at start.
COPY --from=builder /src/dist/parameters-secrets-sidecar-binary/ /opt/
# The token: AWS_TOKEN=<value>, or AWS_TOKEN=file:///run/secrets/<file> for a mounted secret.
# It listens on 127.0.0.1 only: the application container must share this network namespace
# (a Kubernetes pod; an ECS task in awsvpc mode). The image sets no daemon setting: the port is
# 2773 by default, and a --config file's http_port is not overridden by anything set here.
# With --config FILE, give the health check the same: --healthcheck --config FILE.
USER 10001:10001
EXPOSE 2773
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/opt/extensions/parameters-secrets-sidecar", "--healthcheck"]
ENTRYPOINT ["/opt/extensions/parameters-secrets-sidecar"]

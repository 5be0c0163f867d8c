# syntax=docker/dockerfile:1.7
# Two images from one file, both installing this package through its pyproject extras:
#   docker build --target operator  -t modeldeploy-operator .
#   docker build --target optimizer -t modeldeploy-optimizer .                           # ONNX Runtime, CPU
#   docker build --target optimizer --build-arg TENSORRT=true -t modeldeploy-optimizer:gpu .  # + TensorRT, CUDA EP
# Every pip install runs with `/` as working directory: in the source folder, `python -m ...` would import
# the folder `operator/` instead of the standard library's `operator` module.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------
# Sources only: what `pip install` needs to build the package (see .dockerignore for what stays out).
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator

# ---------------------------------------------------------------------------------------------------------
# The operator's virtual environment: kopf, the Kubernetes client, Prometheus and Triton clients.
FROM ${PYTHON_IMAGE} AS operator-build
WORKDIR /
COPY --from=source /src /src
RUN python -m venv /opt/modeldeploy \
 && /opt/modeldeploy/bin/pip install --no-cache-dir --disable-pip-version-check "/src[operator]" \
 && /opt/modeldeploy/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------------------
# The optimizer's virtual environment: onnx + ONNX Runtime, and a sample model built in code
# (/opt/modeldeploy/samples/cnn.onnx, used by examples/cpu-kind.yaml and the e2e); with TENSORRT=true the CUDA build of ONNX
# Runtime and TensorRT replace the CPU runtime (for GPU nodes; keep TensorRT's major version equal to the
# one in the Triton image that serves the engines).
FROM ${PYTHON_IMAGE} AS optimizer-build
ARG TENSORRT=false
# Space-separated requirements; globbing is off where they are expanded, so extras in [] are safe.
# TensorRT pinned to the one in the default serving image (Triton 24.08 ships TensorRT 10.3.0): an engine
# only loads in the TensorRT version that built it. A test keeps this pin and the Triton tag together.
ARG GPU_PACKAGES="onnxruntime-gpu[cuda,cudnn] tensorrt-cu12==10.3.0"
WORKDIR /
COPY --from=source /src /src
RUN python -m venv /opt/modeldeploy \
 && /opt/modeldeploy/bin/pip install --no-cache-dir --disable-pip-version-check "/src[optimizer]" \
 && if [ "$TENSORRT" = "true" ]; then \
      /opt/modeldeploy/bin/pip uninstall --yes onnxruntime \
      && set -f \
      && /opt/modeldeploy/bin/pip install --no-cache-dir --disable-pip-version-check $GPU_PACKAGES; \
    fi \
 && /opt/modeldeploy/bin/python -c 'from modeldeploy.optimizer.sample_model import main; main()' \
      /opt/modeldeploy/samples/cnn.onnx \
 && /opt/modeldeploy/bin/pip uninstall --yes pip

# ---------------------------------------------------------------------------------------------------------
# Operator image: slim, no compilers, numeric non-root user (runAsNonRoot can verify it), read-only root
# filesystem friendly (byte code compiled at install time, nothing written at run time but /tmp).
FROM ${PYTHON_IMAGE} AS operator
LABEL org.opencontainers.image.title="modeldeploy-operator" \
      org.opencontainers.image.description="modeldeploy Kubernetes operator (kopf)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for the numeric UID: libraries that look the user up (getpass) find it.
RUN groupadd --system --gid 65532 modeldeploy \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin modeldeploy
COPY --from=operator-build /opt/modeldeploy /opt/modeldeploy
ENV PATH=/opt/modeldeploy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["modeldeploy"]
CMD ["run", "--all-namespaces"]

# ---------------------------------------------------------------------------------------------------------
# Optimizer image: the optimization Job runs `modeldeploy optimize ...` in it.
FROM ${PYTHON_IMAGE} AS optimizer
LABEL org.opencontainers.image.title="modeldeploy-optimizer" \
      org.opencontainers.image.description="modeldeploy optimization Job (ONNX Runtime; TensorRT with TENSORRT=true)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A named user for the numeric UID: libraries that look the user up (getpass) find it.
RUN groupadd --system --gid 65532 modeldeploy \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin modeldeploy
COPY --from=optimizer-build /opt/modeldeploy /opt/modeldeploy
ENV PATH=/opt/modeldeploy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["modeldeploy"]
CMD ["optimize", "--help"]

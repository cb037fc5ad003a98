# GPU worker: CUDA runtime + torch + transformers. The model is fetched into /data on first start.
# Default: a writer of the Redis deployment (a second one waits as hot standby); override the
# command with `factpatch worker --role replica`, or `factpatch serve` for the one-container mode.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip curl \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu124
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY store ./store
COPY editing ./editing
COPY evaluation ./evaluation
COPY workers ./workers
COPY service ./service
COPY cli ./cli
RUN pip install --no-cache-dir ".[service,worker]"
ENV FACTPATCH_DATA_DIR=/data
VOLUME ["/data"]
CMD ["factpatch", "worker", "--role", "writer"]

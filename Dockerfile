# The fic image: the Dagster code location (default command), and the same image runs the webserver, the
# daemon and the demo shop in docker-compose.yml. Build: `docker compose build` (or `docker build -t fic-dagster:local .`).
#
# torch is pinned in pyproject.toml; from PyPI that is the CUDA build (several GB). For a CPU-only image:
#   docker compose build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/dagster/app

# 1. The dependencies, with pyproject.toml's exact pins (dagster-postgres, the instance's storage, among them), in
#    their own layer: rebuilt only when pyproject.toml changes.
ARG TORCH_INDEX_URL=""
COPY pyproject.toml ./
RUN set -eux; \
    python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt; \
    if [ -n "$TORCH_INDEX_URL" ]; then \
        grep -E '^(torch|torchvision)==' /tmp/requirements.txt > /tmp/torch.txt; \
        pip install --index-url "$TORCH_INDEX_URL" -r /tmp/torch.txt; \
    fi; \
    pip install -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt

# 2. The code. An editable install, as scripts/setup does: the code finds label_studio/, crawler/ and params.yaml
#    beside fic_assets/ (the repo layout), here under /opt/dagster/app. No git in the image: the copied DVC
#    project (for `dvc repro` inside a container) is switched to no-SCM mode.
COPY README.md ./
COPY fic_assets ./fic_assets
COPY crawler ./crawler
COPY label_studio ./label_studio
COPY params.yaml dvc.yaml ./
COPY .dvc/config ./.dvc/config
RUN set -eux; \
    pip install --no-deps -e .; \
    python -m dvc config core.no_scm true

# 3. The Dagster instance (Postgres storage, queued runs, the `duckdb` pool) and the compose workspace.
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/deploy/workspace.yaml

# An unprivileged user; the volume mount points exist with its ownership, so new named volumes inherit it.
RUN set -eux; \
    useradd --create-home --uid 1000 --user-group fic; \
    mkdir -p /opt/dagster/data /opt/dagster/models ${DAGSTER_HOME}/storage; \
    chown -R fic:fic /opt/dagster/data /opt/dagster/models ${DAGSTER_HOME} /opt/dagster/app/.dvc
USER fic

EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "fic_assets.definitions", "--location-name", "fic"]

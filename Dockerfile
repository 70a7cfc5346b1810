# The `anomaly` job: `docker build -t anomaly .`
#
#   docker run --rm -v "$PWD/config.yaml:/etc/anomaly/config.yaml:ro" \
#     -v anomaly-models:/var/lib/anomaly anomaly               # one cycle (the default CMD)
#   docker run ... anomaly serve --config /etc/anomaly/config.yaml   # on the config's schedule
#
# The config is mounted at /etc/anomaly/config.yaml (nothing is baked in: URLs and secrets
# differ per site); point its `model_dir` at /var/lib/anomaly/models, the volume below.
# No HEALTHCHECK: `run --once` is a batch job that exits, and for `serve` the job's own series
# (anomaly_job_last_success_timestamp_seconds, push_time_seconds) and the dead-man alerts in
# deploy/prometheus/anomaly-rules.yml say whether it works, which a probe could not.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it and volumes can be
# chowned to it (fsGroup: 10001).
RUN groupadd --system --gid 10001 anomaly \
    && useradd --system --uid 10001 --gid anomaly --no-create-home \
       --home-dir /var/lib/anomaly --shell /usr/sbin/nologin anomaly \
    && mkdir -p /etc/anomaly /var/lib/anomaly/models \
    && chown -R anomaly:anomaly /var/lib/anomaly

WORKDIR /src
COPY pyproject.toml README.md ./
COPY anomaly ./anomaly
# Versions come from pyproject.toml's dependency ranges; the build copies no lock file.
RUN pip install --no-cache-dir . \
    && rm -rf /src

WORKDIR /var/lib/anomaly
VOLUME ["/var/lib/anomaly"]
USER 10001:10001

ENTRYPOINT ["anomaly"]
CMD ["run", "--once", "--config", "/etc/anomaly/config.yaml"]

# The twinstream image for docker-compose: the Ray head (Serve app), ingest workers and training jobs.
FROM python:3.11-slim
# Ray clients and `ray start` in this image use token authentication unless told otherwise
# (docker-compose.yml passes the token as RAY_AUTH_TOKEN; only docker-compose.insecure.yml turns it off).
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token
WORKDIR /app
# The locked dependency set first (a layer that survives code changes), then the package without deps.
COPY requirements.lock ./
RUN pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY twinstream ./twinstream
COPY services ./services
COPY training ./training
COPY cli ./cli
COPY protos ./protos
COPY deploy ./deploy
RUN pip install --no-deps . && useradd --create-home twin
USER twin
# The HTTP API; Ray's own ports (GCS 6379, dashboard/job API 8265) are for the compose network only.
EXPOSE 8000
ENTRYPOINT ["twinstream"]
CMD ["--help"]

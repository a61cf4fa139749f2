# The twinstream image for docker-compose: the Ray head (Serve app), ingest workers and training jobs.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twinstream ./twinstream
COPY services ./services
COPY training ./training
COPY protos ./protos
COPY deploy ./deploy
RUN pip install . && useradd --create-home twin
USER twin
ENTRYPOINT ["twinstream"]
CMD ["--help"]

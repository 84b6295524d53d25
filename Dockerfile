# recsys serve: the published model over HTTP. Mount the model directory at /models (the nightly
# job publishes into it; the service follows its CURRENT pointer and hot-reloads).
#
#   docker build -t recsys .
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" recsys
#   docker run -p 8000:8000 -v "$PWD/models:/models:ro" -e RECSYS_API_KEY=... recsys \
#       --workers 2 --redis redis://redis:6379/0
FROM python:3.11-slim

# OpenMP for faiss and LightGBM, BLAS held at one thread (concurrent calls share the cores).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
ENV OPENBLAS_NUM_THREADS=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY recsys ./recsys
COPY training ./training
COPY serving ./serving
RUN pip install ".[serve]"

RUN useradd --system --uid 10001 recsys
USER recsys
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
ENTRYPOINT ["recsys", "serve", "--models", "/models", "--host", "0.0.0.0", "--port", "8000"]

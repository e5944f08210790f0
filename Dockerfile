# The image every task of an exported pipeline runs in (make export-argo): the locked
# environment plus this project, at /project. Build it from this folder:
#   docker build -t registry/name:tag . && docker push registry/name:tag
# What the pipeline writes (products, reports, stores) is mounted over /project from a shared
# volume by the exported Workflow; .dockerignore keeps local products out of the image.
FROM python:3.11-slim
ENV PLOOMBER_STATS_ENABLED=false PLOOMBER_VERSION_CHECK_DISABLED=true \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false MPLBACKEND=Agg
WORKDIR /project
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --requirement requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps .

# The image every exported task runs in: the locked environment plus this project.
FROM python:3.11-slim
ENV PLOOMBER_STATS_ENABLED=false UV_COMPILE_BYTECODE=1 MPLBACKEND=Agg
COPY requirements.lock.txt project/requirements.lock.txt
RUN pip install --no-cache-dir --require-hashes --requirement project/requirements.lock.txt
COPY dist/* project/
WORKDIR /project/
RUN tar --strip-components=1 -zxvf *.tar.gz && pip install --no-cache-dir --no-deps .

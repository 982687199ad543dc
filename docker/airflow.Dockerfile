# syntax=docker/dockerfile:1
# Airflow 3 with Bitácora's DAGs, the step binaries and the Python module (BITACORA_RUNNER picks one).
#   docker build -f docker/Dockerfile -t bitacora . && docker build -f docker/airflow.Dockerfile -t bitacora-airflow .

FROM bitacora AS bitacora

FROM apache/airflow:3.3.2-python3.11
COPY --from=bitacora /usr/local/bin/bitacora /usr/local/bin/bitacora-extract /usr/local/bin/bitacora-transform \
     /usr/local/bin/bitacora-catalog /usr/local/bin/bitacora-query /usr/local/bin/
COPY --from=bitacora --chown=airflow:0 /opt/bitacora/wheels/ /tmp/wheels/
# Pinning the image's own Airflow keeps pip from moving the packages they share (pyarrow, ...).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /tmp/wheels/bitacora-*.whl \
    && rm -rf /tmp/wheels
COPY dags/ /opt/airflow/dags/
ENV BITACORA_BIN_DIR=/usr/local/bin \
    BITACORA_CONFIG=/opt/bitacora/bitacora.toml \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

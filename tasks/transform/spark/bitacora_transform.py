"""Bitácora's transform on Apache Spark (AWS Glue or EMR Serverless), for days one machine cannot
handle. It runs the transform contract of `bitacora-transform` with the same normaliser: each raw
line goes through the Rust normalisation of the `bitacora` wheel (`bitacora.normalize_lines`, inside
`mapInArrow`), so both engines give the same `events` and `quarantine` columns, types, values and
quarantine reasons; Spark does the day-wide dedup (by the app's `event_id`, else CloudWatch's
`eventId`; the delivery with the smallest `(timestamp, eventId)` is kept), the ordering, and writes
zstd Parquet under `events/dt=D/run=R/` and `quarantine/dt=D/run=R/`, with its own counts in
`events/dt=D/run=R/_bitacora_counts.json` for the step to check. A conformance test runs it next to
the Rust transform on the same raw zone and compares the rows.

The raw zone it reads is gzip NDJSON (`transform.engine` = glue | emr-serverless makes the extract
write it so, with SSE-KMS instead of client-side encryption). The driver and the workers need the
`bitacora` wheel (Glue: `--additional-python-modules s3://…/bitacora-….whl`; EMR Serverless: a
packed virtualenv, `spark.archives`), built for the cluster's platform (manylinux).

    spark-submit bitacora_transform.py --raw s3://lake/raw/dt=D/run=R/ --events s3://lake/events/dt=D/run=S/ \
        --quarantine s3://lake/quarantine/dt=D/run=S/ --log-group /mobile/app [--max-record-bytes 262144]
"""

from __future__ import annotations

import argparse
import json

# The events columns, then the delivery provenance the dedup orders by (the Rust work schema).
EVENT_COLUMNS = [
    "event_id", "event_time", "ingest_time", "log_group", "log_stream", "level", "event_type", "user_id",
    "session_id", "app_version", "platform", "os_version", "device_model", "country", "latency_ms",
    "status_code", "error_code", "message", "properties",
]
HIDDEN = ["_source_timestamp", "_source_event_id"]
QUARANTINE_COLUMNS = ["reason", "detail", "log_group", "log_stream", "source_event_id", "source_timestamp", "raw"]


def _combined(events, quarantine):
    """One Arrow batch of both outputs (mapInArrow has one schema): a `_kind` column, the events'
    columns, and the quarantine's prefixed with `q_`, each null in the other kind's rows."""
    import pyarrow as pa

    n_e, n_q = events.num_rows, quarantine.num_rows
    names, arrays = ["_kind"], [pa.array(["event"] * n_e + ["quarantine"] * n_q, pa.string())]
    for c in EVENT_COLUMNS + HIDDEN:
        col = events.column(c)
        names.append(c)
        arrays.append(pa.concat_arrays([col, pa.nulls(n_q, col.type)]))
    for c in QUARANTINE_COLUMNS:
        col = quarantine.column(c)
        names.append("q_" + c)
        arrays.append(pa.concat_arrays([pa.nulls(n_e, col.type), col]))
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _spark_schema():
    from pyspark.sql import types as T

    s, ts, i64, i32 = T.StringType(), T.TimestampType(), T.LongType(), T.IntegerType()
    types = {"event_time": ts, "ingest_time": ts, "latency_ms": i64, "status_code": i32,
             "_source_timestamp": i64, "q_source_timestamp": ts}
    names = ["_kind"] + EVENT_COLUMNS + HIDDEN + ["q_" + c for c in QUARANTINE_COLUMNS]
    return T.StructType([T.StructField(n, types.get(n, s), True) for n in names])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--quarantine", required=True)
    ap.add_argument("--log-group", default="/mobile/app")
    ap.add_argument("--max-record-bytes", type=int, default=262144)
    a, _ = ap.parse_known_args(argv)

    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    try:
        import bitacora  # noqa: F401  (the Rust normaliser; needed on the workers too)
    except ImportError as e:
        raise SystemExit(
            f"the bitacora wheel is not installed ({e}): give it to the job "
            "(Glue: --additional-python-modules; EMR Serverless: a packed virtualenv)") from e

    spark = SparkSession.builder.appName("bitacora-transform").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    log_group, max_record_bytes = a.log_group, a.max_record_bytes

    def normalize(batches):
        import bitacora

        for b in batches:
            events, quarantine = bitacora.normalize_lines(b.column(0), log_group, max_record_bytes)
            yield _combined(events, quarantine)

    lines = spark.read.text(a.raw.rstrip("/") + "/*.jsonl.gz")
    tagged = lines.mapInArrow(normalize, _spark_schema()).cache()
    events = tagged.filter(F.col("_kind") == "event").select(*EVENT_COLUMNS, *HIDDEN)
    quarantine = tagged.filter(F.col("_kind") == "quarantine").select(
        *[F.col("q_" + c).alias(c) for c in QUARANTINE_COLUMNS])

    w = Window.partitionBy("event_id").orderBy("_source_timestamp", "_source_event_id")
    kept = (events.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1")
            .select(*EVENT_COLUMNS)
            .orderBy("event_type", "event_time", "event_id"))
    (kept.write.mode("overwrite").option("compression", "zstd").parquet(a.events))
    (quarantine
     .orderBy("source_timestamp", "source_event_id", "raw", "reason", "detail")
     .coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(a.quarantine))
    # The job's own counts, for the Rust side to check `events + quarantine + duplicates = read`
    # against the raw manifest and the Parquet footers (not derive one from the others).
    n_events = events.count()
    counts = {"read": tagged.count(), "events": kept.count(), "quarantine": quarantine.count()}
    counts["duplicates"] = n_events - counts["events"]
    _write_text(spark, a.events.rstrip("/") + "/" + COUNTS_FILE, json.dumps(counts, sort_keys=True))
    spark.stop()


COUNTS_FILE = "_bitacora_counts.json"  # `_`: ignored by Hive, Athena and Spark readers


def _write_text(spark, url: str, text: str) -> None:
    """One small object at `url` through Hadoop's file systems (file://, s3:// on EMR and Glue)."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(url)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


if __name__ == "__main__":
    main()

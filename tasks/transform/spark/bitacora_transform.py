"""Bitácora's transform on Apache Spark (AWS Glue or EMR Serverless), for days one machine cannot
handle. It implements the transform contract of `bitacora-transform` exactly: the same `events` and
`quarantine` columns and types, the same quarantine reasons, the same dedup rule (by the app's
`event_id`, else CloudWatch's `eventId`; the delivery with the smallest `(timestamp, eventId)` is
kept), written as zstd Parquet under `events/dt=D/run=R/` and `quarantine/dt=D/run=R/`.
A conformance test runs it next to the Rust transform on the same raw zone and compares the rows.

The raw zone it reads is gzip NDJSON (`transform.engine` = glue | emr-serverless makes the extract
write it so, with SSE-KMS instead of client-side encryption).

    spark-submit bitacora_transform.py --raw s3://lake/raw/dt=D/run=R/ --events s3://lake/events/dt=D/run=S/ \
        --quarantine s3://lake/quarantine/dt=D/run=S/ --log-group /mobile/app [--max-record-bytes 262144]

Quarantine `detail` texts are the Rust transform's, but for `malformed_json` and `broken_envelope`,
whose details quote each engine's JSON parser.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import datetime, timezone

FIELDS = [
    "event_id", "ts", "level", "event_type", "user_id", "session_id", "app_version", "platform",
    "os_version", "device_model", "country", "latency_ms", "status_code", "error_code", "props",
]
STRING_FIELDS = ["level", "event_type", "user_id", "session_id", "app_version", "platform", "os_version",
                 "device_model", "country", "error_code"]
I64 = (-(2**63), 2**63 - 1)
I32 = (-(2**31), 2**31 - 1)
# RFC 3339 as chrono's parse_from_rfc3339 reads it.
RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class Reject(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def _pairs_unique(pairs):
    seen = set()
    for k, _ in pairs:
        if k in seen:
            raise ValueError(f"duplicate field {k}")
        seen.add(k)
    return dict(pairs)


class Obj(list):
    """A JSON object as the list of its (key, value) pairs: duplicates and order kept, as the Rust
    reader sees them."""


def _pairs_list(pairs):
    return Obj(pairs)


# char::is_whitespace (Unicode White_Space), which Rust's trim_start uses; Python's isspace() also
# counts \x1c-\x1f.
RUST_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _strict_loads(text, hook):
    return json.loads(text, object_pairs_hook=hook, parse_constant=_no_constants)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _show(raw) -> str:
    s = json.dumps(_plain(raw), separators=(",", ":"), ensure_ascii=False)
    return s if len(s) <= 60 else s[:57] + "..."


def rust_debug(s: str) -> str:
    """A string as Rust's `{:?}` shows it (quotes, backslash escapes), for identical details."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def parse_ts(value: str) -> int:
    m = RFC3339.match(value)
    if not m:
        raise ValueError("not RFC 3339")
    frac = m.group(7) or ""
    base = f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}"
    tz = m.group(8).upper()
    tz = "+00:00" if tz == "Z" else tz
    dt = datetime.fromisoformat(base + tz)
    micros = int((frac[1:] + "000000")[:6]) if frac else 0
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    delta = dt - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + micros


def _str_field(name, value):
    if value is None:
        return None
    if isinstance(value, str):
        return value
    raise Reject("wrong_type", f"field {name}: expected a string, got {_show(value)}")


def _int_field(name, value, bounds):
    if value is None:
        return None
    if _is_int(value) and bounds[0] <= value <= bounds[1]:
        return value
    if _is_int(value) and name == "status_code" and I64[0] <= value <= I64[1]:
        raise Reject("wrong_type", f"field status_code: {value} does not fit a 32-bit integer")
    raise Reject("wrong_type", f"field {name}: expected an integer, got {_show(value)}")


def _properties(props_present, props, unknown, top):
    """`props` plus unknown keys as a JSON object, as the Rust normalisation builds it: `props` text
    as sent when alone and compact, else its members and the unknown keys merged, sorted by key
    (`props` wins, its last member of a key; else the first unknown one), values as sent without
    whitespace (numbers keep their digits). `top`: the message's members as (key, JSON text)."""
    props_text = None
    for k, t in top:
        if k == "props":
            props_text = t  # the last one, as for every known field
    if props_present and props is not None and not isinstance(props, Obj):
        raise Reject("wrong_type", f"field props: expected an object, got {_show(props)}")
    if not unknown:
        if not props_present or props is None:
            return None
        if props_text is not None and not any(c in props_text for c in " \t\n\r"):
            return props_text
    members = []  # (key, from props, text)
    if props_present and props is not None:
        members.extend((k, True, t) for k, t in _member_list(props_text))
    unknown_keys = {k for k, _ in unknown}
    members.extend((k, False, t) for k, t in top if k in unknown_keys)
    members.sort(key=lambda m: (m[0], not m[1]))
    out, i = [], 0
    while i < len(members):
        key = members[i][0]
        n = 0
        while i + n < len(members) and members[i + n][0] == key:
            n += 1
        group = members[i:i + n]
        from_props = sum(1 for m in group if m[1])
        text = group[from_props - 1][2] if from_props else group[0][2]
        out.append(json.dumps(key, ensure_ascii=False) + ":" + _compact(text))
        i += n
    return "{" + ",".join(out) + "}"


def _compact(text: str) -> str:
    """JSON text without its whitespace outside strings."""
    out, in_str, escaped = [], False, False
    for c in text:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in " \t\n\r":
            continue
        out.append(c)
    return "".join(out)


def _member_list(text: str) -> list:
    """The members of a JSON object's text as (key, JSON text of the value), in order, duplicates
    kept."""
    dec = json.JSONDecoder()
    ws = " \t\n\r"
    s, out = text, []
    i = 0
    while s[i] in ws:
        i += 1
    i += 1  # '{'
    while True:
        while s[i] in ws:
            i += 1
        if s[i] == "}":
            return out
        if s[i] == ",":
            i += 1
            continue
        key, i = dec.raw_decode(s, i)
        while s[i] in ws:
            i += 1
        i += 1  # ':'
        while s[i] in ws:
            i += 1
        _, end = dec.raw_decode(s, i)
        out.append((key, s[i:end]))
        i = end


def _plain(v):
    """Objects (pairs) back to dicts, for re-serialisation; later duplicates win."""
    if isinstance(v, Obj):
        out = {}
        for k, x in v:
            out[k] = _plain(x)
        return out
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _cut(text: str, limit: int) -> str:
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def _marker(line: str):
    """(tag, fields) of a marker line of the extract, None when it is not a well-formed one."""
    try:
        tag, o = json.loads(line)
        need = {"bitacora:oversize": ("timestamp", "bytes", "limit", "source", "line", "offset", "head"),
                "bitacora:rejected": ("source", "line", "offset", "reason", "dated_by", "raw")}[tag]
        if not isinstance(o, dict) or any(k not in o for k in need):
            return None
        return tag, o
    except Exception:
        return None


def normalize(line: str, log_group: str, max_record_bytes: int):
    """One raw record → ("event", dict) or ("quarantine", dict)."""
    raw_bytes = line.encode("utf-8")

    def q(reason, detail, stream=None, eid=None, ts=None, raw=line):
        return ("quarantine", {
            "reason": reason, "detail": detail, "log_group": log_group, "log_stream": stream,
            "source_event_id": eid, "source_timestamp": None if ts is None else ts * 1000, "raw": raw,
        })

    # Lines the extract wrote for source lines it could not pass on whole (see the Rust model's
    # OversizeLine and RejectedLine): never envelopes, they start with `[`.
    if line.startswith('["bitacora:'):
        marker = _marker(line)
        if marker is not None:
            tag, o = marker
            if tag == "bitacora:oversize":
                detail = (f"record is {o['bytes']} bytes, more than transform.max_record_bytes = {o['limit']}; "
                          f"raw truncated ({' '.join(o['source'].split())} line {o['line']}, byte {o['offset']})")
                return q("oversize", detail, o.get("logStreamName"), o.get("eventId"), o["timestamp"],
                         raw=_cut(o["head"], max_record_bytes))
            detail = (f"no usable envelope timestamp ({' '.join(o['reason'].split())}); "
                      f"{' '.join(o['source'].split())} line {o['line']}, byte {o['offset']}; "
                      f"its day is that of the {o['dated_by']}")
            return q("broken_envelope", detail, raw=_cut(o["raw"], max_record_bytes))

    env = None
    try:
        env = _strict_loads(line, _pairs_unique)
        ok = (isinstance(env, dict) and _is_int(env.get("timestamp")) and I64[0] <= env["timestamp"] <= I64[1]
              and isinstance(env.get("message"), str) and isinstance(env.get("logStreamName"), str)
              and isinstance(env.get("eventId"), str)
              and (env.get("ingestionTime") is None or (_is_int(env["ingestionTime"]) and I64[0] <= env["ingestionTime"] <= I64[1])))
        if not ok:
            env = None
    except Exception:
        env = None

    if len(raw_bytes) > max_record_bytes:
        cut = raw_bytes[:max_record_bytes].decode("utf-8", errors="ignore")
        detail = (f"record is {len(raw_bytes)} bytes, more than transform.max_record_bytes = "
                  f"{max_record_bytes}; raw truncated")
        if env is None:
            return q("oversize", detail, raw=cut)
        return q("oversize", detail, env["logStreamName"], env["eventId"], env["timestamp"], raw=cut)
    if env is None:
        return q("broken_envelope", "not a CloudWatch-shaped event")

    ts_ms, message, stream, cw_id = env["timestamp"], env["message"], env["logStreamName"], env["eventId"]
    ingest = env.get("ingestionTime")
    event = {
        "event_id": cw_id, "event_time": ts_ms * 1000, "ingest_time": None if ingest is None else ingest * 1000,
        "log_group": log_group, "log_stream": stream, "level": None, "event_type": None, "user_id": None,
        "session_id": None, "app_version": None, "platform": None, "os_version": None, "device_model": None,
        "country": None, "latency_ms": None, "status_code": None, "error_code": None, "message": None,
        "properties": None, "_source_timestamp": ts_ms, "_source_event_id": cw_id,
    }
    trimmed = message.lstrip(RUST_WS)
    if not trimmed.startswith("{"):
        event["event_type"] = "text"
        event["message"] = message
        return ("event", event)
    try:
        pairs = _strict_loads(trimmed, _pairs_list)
        if not isinstance(pairs, Obj):
            raise ValueError("not an object")
    except Exception as e:
        return q("malformed_json", f"message is not a JSON object: {e}", stream, cw_id, ts_ms)

    known, unknown = {}, []
    for k, v in pairs:
        if k in FIELDS:
            known[k] = v  # later duplicates win
        else:
            unknown.append((k, v))
    try:
        eid = _str_field("event_id", known.get("event_id"))
        if eid:
            event["event_id"] = eid
        if "ts" in known:
            t = known["ts"]
            if t is not None:
                if not isinstance(t, str):
                    shown = json.dumps(_plain(t), separators=(",", ":"), ensure_ascii=False)
                    raise Reject("unparsable_ts", f"field ts: expected an RFC 3339 string, got {shown}")
                try:
                    event["event_time"] = parse_ts(t)
                except Exception:
                    raise Reject("unparsable_ts", f"field ts: {rust_debug(t)} is not an RFC 3339 timestamp")
        for f in STRING_FIELDS:
            event[f] = _str_field(f, known.get(f))
        event["latency_ms"] = _int_field("latency_ms", known.get("latency_ms"), I64)
        event["status_code"] = _int_field("status_code", known.get("status_code"), I32)
        event["properties"] = _properties("props" in known, known.get("props"), unknown,
                                          _member_list(trimmed))
    except Reject as r:
        return q(r.reason, r.detail, stream, cw_id, ts_ms)
    return ("event", event)


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
    from pyspark.sql import types as T

    spark = SparkSession.builder.appName("bitacora-transform").getOrCreate()
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    lines = spark.read.text(a.raw.rstrip("/") + "/*.jsonl.gz").rdd.map(lambda r: r.value)
    tagged = lines.map(lambda l: normalize(l, a.log_group, a.max_record_bytes)).cache()

    s, ts, i64, i32 = T.StringType(), T.LongType(), T.LongType(), T.IntegerType()
    ev_fields = [("event_id", s, False), ("event_time", ts, False), ("ingest_time", ts, True), ("log_group", s, False),
                 ("log_stream", s, False), ("level", s, True), ("event_type", s, True), ("user_id", s, True),
                 ("session_id", s, True), ("app_version", s, True), ("platform", s, True), ("os_version", s, True),
                 ("device_model", s, True), ("country", s, True), ("latency_ms", i64, True), ("status_code", i32, True),
                 ("error_code", s, True), ("message", s, True), ("properties", s, True),
                 ("_source_timestamp", i64, False), ("_source_event_id", s, False)]
    ev_schema = T.StructType([T.StructField(n, t, nullable) for n, t, nullable in ev_fields])
    q_fields = [("reason", s, False), ("detail", s, False), ("log_group", s, False), ("log_stream", s, True),
                ("source_event_id", s, True), ("source_timestamp", ts, True), ("raw", s, False)]
    q_schema = T.StructType([T.StructField(n, t, nullable) for n, t, nullable in q_fields])

    events = spark.createDataFrame(
        tagged.filter(lambda t: t[0] == "event").map(lambda t: tuple(t[1][n] for n, _, _ in ev_fields)), ev_schema)
    quarantine = spark.createDataFrame(
        tagged.filter(lambda t: t[0] == "quarantine").map(lambda t: tuple(t[1][n] for n, _, _ in q_fields)), q_schema)

    micros = lambda c: F.timestamp_micros(F.col(c))  # noqa: E731
    w = Window.partitionBy("event_id").orderBy("_source_timestamp", "_source_event_id")
    kept = (events.withColumn("_rn", F.row_number().over(w)).filter("_rn = 1")
            .withColumn("event_time", micros("event_time")).withColumn("ingest_time", micros("ingest_time"))
            .select([n for n, _, _ in ev_fields if not n.startswith("_")])
            .orderBy("event_type", "event_time", "event_id"))
    (kept.write.mode("overwrite").option("compression", "zstd").parquet(a.events))
    (quarantine.withColumn("source_timestamp", micros("source_timestamp"))
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

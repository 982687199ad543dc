"""The batch steps on an s3:// lake behind a local AWS endpoint (moto): SSE-KMS on every object,
KMS-wrapped envelope keys, and the same answers as the embedded run."""

from __future__ import annotations

import json

import pytest

from conftest import DAY, named_answers, run, s3_keys


def answers(config) -> dict:
    return named_answers(config, DAY)


def all_objects(s3, bucket):
    return s3_keys(s3, bucket)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """The same generated day through the embedded pipeline: the reference answers."""
    base = tmp_path_factory.mktemp("embedded")
    run("bitacora", "generate", "--date", DAY, "--events", "6000", "--out", str(base / "logs"), "--seed", "21")
    config = base / "bitacora.toml"
    config.write_text(
        f'[source]\npath = "{base / "logs"}"\n[lake]\nroot = "{base / "lake"}"\n'
        f'[encryption]\nmode = "envelope"\nkey_file = "{base / "k"}"\n'
    )
    run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY)
    return {"logs": base / "logs", "answers": answers(config)}


def s3_config(path, logs, root, encryption: str) -> str:
    path.write_text(f'[source]\npath = "{logs}"\n[lake]\nroot = "{root}"\n[encryption]\n{encryption}\n')
    return path


def test_sse_kms_lake_gives_embedded_answers_and_encrypts_every_object(aws, embedded, tmp_path):
    s3, kms = aws["client"]("s3"), aws["client"]("kms")
    s3.create_bucket(Bucket="lake")
    key_id = kms.create_key(Description="bitacora lake")["KeyMetadata"]["KeyId"]
    config = s3_config(tmp_path / "b.toml", embedded["logs"], "s3://lake/prod", f'mode = "sse-kms"\nkms_key_id = "{key_id}"')

    report = json.loads(run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY).stdout)
    assert report["status"] == "ok", report
    assert answers(config) == embedded["answers"]

    keys = all_objects(s3, "lake")
    assert any(k.startswith("prod/raw/dt=") for k in keys)
    assert any(k.startswith("prod/events/dt=") and k.endswith(".parquet") for k in keys)
    assert any(k.startswith("prod/_manifests/") for k in keys)
    for k in keys:
        head = s3.head_object(Bucket="lake", Key=k)
        assert head.get("ServerSideEncryption") == "aws:kms", k
        assert head.get("SSEKMSKeyId", "").endswith(key_id), (k, head.get("SSEKMSKeyId"))

    # A second run of the day changes nothing a reader sees.
    def events_bytes():
        import hashlib

        m = json.loads(s3.get_object(Bucket="lake", Key=f"prod/_manifests/transform/dt={DAY}.json")["Body"].read())
        return sorted(
            hashlib.sha256(s3.get_object(Bucket="lake", Key=f"prod/{f['path']}")["Body"].read()).hexdigest()
            for f in m["outputs"]["events"]["files"]
        )

    before = events_bytes()
    run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY)
    assert events_bytes() == before
    assert answers(config) == embedded["answers"]


def test_kms_wrapped_envelope_keys(aws, embedded, tmp_path):
    s3, kms = aws["client"]("s3"), aws["client"]("kms")
    s3.create_bucket(Bucket="lake")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    config = s3_config(tmp_path / "b.toml", embedded["logs"], "s3://lake", f'mode = "envelope"\nkms_key_id = "{key_id}"')

    run("bitacora-extract", "--config", str(config), "--date", DAY)
    raw = [k for k in all_objects(s3, "lake") if k.startswith("raw/")]
    assert raw
    for k in raw:
        body = s3.get_object(Bucket="lake", Key=k)["Body"].read()
        assert body.startswith(b"BTCENV01"), k
        header_len = int.from_bytes(body[8:12], "little")
        header = json.loads(body[12 : 12 + header_len])
        assert header["provider"] == "kms" and header["key_id"] == key_id
        assert b'"event_type' not in body

    # The wrong KMS key fails the transform with a message naming the object and the key.
    bad = s3_config(tmp_path / "bad.toml", embedded["logs"], "s3://lake", f'mode = "envelope"\nkms_key_id = "{other}"')
    proc = run("bitacora-transform", "--config", str(bad), "--date", DAY, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)
    assert "raw/dt=" in err["error"] and other in err["error"], err

    run("bitacora-transform", "--config", str(config), "--date", DAY)
    run("bitacora-catalog", "--config", str(config), "--date", DAY)
    assert answers(config) == embedded["answers"]


def test_sse_kms_needs_an_s3_lake(tmp_path):
    config = tmp_path / "b.toml"
    config.write_text(f'[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nmode = "sse-kms"\nkms_key_id = "alias/x"\n')
    proc = run("bitacora-extract", "--config", str(config), "--date", DAY, check=False)
    assert proc.returncode == 2
    assert "encryption.mode" in json.loads(proc.stdout)["error"]


EVENTS_COLUMNS = [
    "event_id", "event_time", "ingest_time", "log_group", "log_stream", "level", "event_type", "user_id",
    "session_id", "app_version", "platform", "os_version", "device_model", "country", "latency_ms",
    "status_code", "error_code", "message", "properties",
]


def test_glue_catalog_registers_tables_and_partitions(aws, embedded, tmp_path):
    s3, glue = aws["client"]("s3"), aws["client"]("glue")
    s3.create_bucket(Bucket="lake")
    config = tmp_path / "g.toml"
    config.write_text(
        f'[source]\npath = "{embedded["logs"]}"\n[lake]\nroot = "s3://lake/prod"\n'
        f'[encryption]\nmode = "envelope"\nkey_file = "{tmp_path / "k"}"\n[catalog]\nkind = "glue"\ndatabase = "mobile"\n'
    )
    run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY)

    table = glue.get_table(DatabaseName="mobile", Name="events")["Table"]
    sd = table["StorageDescriptor"]
    assert sd["Location"] == "s3://lake/prod/events/"
    assert [c["Name"] for c in sd["Columns"]] == EVENTS_COLUMNS
    assert {c["Name"]: c["Type"] for c in sd["Columns"]}["event_time"] == "timestamp"
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert [k["Name"] for k in table["PartitionKeys"]] == ["dt"]
    assert table["TableType"] == "EXTERNAL_TABLE" and table["Parameters"]["classification"] == "parquet"

    manifest = json.loads(s3.get_object(Bucket="lake", Key=f"prod/_manifests/transform/dt={DAY}.json")["Body"].read())
    for name in ["events", "quarantine"]:
        part = glue.get_partition(DatabaseName="mobile", TableName=name, PartitionValues=[DAY])["Partition"]
        assert part["StorageDescriptor"]["Location"] == f"s3://lake/prod/{manifest['outputs'][name]['location']}/"
        assert part["Parameters"]["rows"] == str(manifest["outputs"][name]["rows"])
        assert part["Parameters"]["run_id"] == manifest["run_id"]

    # DataFusion over the Glue catalog and the s3:// lake answers as the embedded run does.
    assert answers(config) == embedded["answers"]

    # Registering the same published run again changes nothing.
    again = json.loads(run("bitacora-catalog", "--config", str(config), "--date", DAY).stdout)
    assert again["database_change"] == "unchanged"
    assert {t["change"] for t in again["tables"]} == {"unchanged"}
    assert {p["change"] for p in again["partitions"]} == {"unchanged"}
    assert len(glue.get_partitions(DatabaseName="mobile", TableName="events")["Partitions"]) == 1

    # A table whose definition drifted (here: a column lost) is updated back to the contract.
    drifted = {k: table[k] for k in ["Name", "StorageDescriptor", "PartitionKeys", "TableType", "Parameters"]}
    drifted["StorageDescriptor"] = dict(sd, Columns=sd["Columns"][:-1])
    glue.update_table(DatabaseName="mobile", TableInput=drifted)
    fixed = json.loads(run("bitacora-catalog", "--config", str(config), "--date", DAY).stdout)
    assert {t["table"]: t["change"] for t in fixed["tables"]} == {"events": "updated", "quarantine": "unchanged"}
    columns = glue.get_table(DatabaseName="mobile", Name="events")["Table"]["StorageDescriptor"]["Columns"]
    assert [c["Name"] for c in columns] == EVENTS_COLUMNS


def test_large_objects_go_up_in_parts(aws, tmp_path):
    s3 = aws["client"]("s3")
    s3.create_bucket(Bucket="lake")
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "60000", "--out", str(logs), "--seed", "2")
    config = tmp_path / "b.toml"
    config.write_text(
        f'[source]\npath = "{logs}"\n[lake]\nroot = "s3://lake"\nmultipart_bytes = 6000000\n'
        f'[encryption]\nkey_file = "{tmp_path / "k"}"\n[extract]\nworkers = 1\n'
    )
    report = json.loads(run("bitacora-extract", "--config", str(config), "--date", DAY).stdout)
    big = [k for k in all_objects(s3, "lake") if k.startswith("raw/") and s3.head_object(Bucket="lake", Key=k)["ContentLength"] > 6_000_000]
    assert big, report
    for k in big:
        # S3 gives multipart objects an ETag ending in -<parts>.
        assert "-" in s3.head_object(Bucket="lake", Key=k)["ETag"], k
    t = json.loads(run("bitacora-transform", "--config", str(config), "--date", DAY).stdout)
    assert t["read"] == report["selected"] == 60000


def test_leases_on_an_s3_lake_refuse_a_second_run_and_expire(aws, embedded, tmp_path):
    """On a cloud lake a run's lease is an object written with conditional requests: while one is
    live a second run of the step and day is refused (exit 1, naming the holder) and changes
    nothing; a lease left by a killed run is taken over once expired; a finished run releases its."""
    s3 = aws["client"]("s3")
    s3.create_bucket(Bucket="lake")
    config = s3_config(tmp_path / "b.toml", embedded["logs"], "s3://lake/l", 'mode = "none"')
    run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY)
    lease_key = f"l/_leases/dt={DAY}/transform.json"
    released = json.loads(s3.get_object(Bucket="lake", Key=lease_key)["Body"].read())
    assert released["expires_at_ms"] == 0 and released["step"] == "transform"
    published = json.loads(s3.get_object(Bucket="lake", Key=f"l/_manifests/transform/dt={DAY}.json")["Body"].read())

    now_ms = int(__import__("time").time() * 1000)
    holder = {"step": "transform", "date": DAY, "run_id": "elsewhere-1", "host": "worker-7", "pid": 4242,
              "acquired_at": "2026-12-01T00:00:00.000Z", "expires_at_ms": now_ms + 600_000, "reads": {}}
    s3.put_object(Bucket="lake", Key=lease_key, Body=json.dumps(holder))
    busy = run("bitacora-transform", "--config", str(config), "--date", DAY, check=False)
    assert busy.returncode == 1, busy.stderr
    report = json.loads(busy.stdout)
    assert report["error_kind"] == "busy"
    assert "run elsewhere-1 (pid 4242 on worker-7" in report["error"] and "expires at" in report["error"]
    after = json.loads(s3.get_object(Bucket="lake", Key=f"l/_manifests/transform/dt={DAY}.json")["Body"].read())
    assert after["run_id"] == published["run_id"], "the refused run published nothing"

    # The holder was killed: once its lease expires, the next run takes it over and publishes.
    s3.put_object(Bucket="lake", Key=lease_key, Body=json.dumps({**holder, "expires_at_ms": now_ms - 1}))
    taken = json.loads(run("bitacora-transform", "--config", str(config), "--date", DAY).stdout)
    assert taken["status"] == "ok" and taken["run_id"] != published["run_id"]
    assert json.loads(s3.get_object(Bucket="lake", Key=lease_key)["Body"].read())["expires_at_ms"] == 0


def test_a_day_of_a_long_lake_costs_one_day_of_requests(aws, tmp_path):
    """A query of one day over a lake of many days asks S3 (local catalog) or Glue for that day
    alone: one partition document (or one BatchGetPartition), a HEAD per file of the day, nothing
    that names another day. A query over every day reads each day's document once."""
    import datetime as dt
    from urllib.parse import unquote

    from faultproxy import FaultProxy

    s3, glue = aws["client"]("s3"), aws["client"]("glue")
    s3.create_bucket(Bucket="lake")
    last = dt.date.fromisoformat(DAY)
    days = [(last - dt.timedelta(days=i)).isoformat() for i in range(4)][::-1]
    logs = tmp_path / "logs"
    for i, d in enumerate(days):
        run("bitacora", "generate", "--date", d, "--events", "400", "--out", str(logs), "--seed", str(30 + i))
    local = s3_config(tmp_path / "l.toml", logs, "s3://lake/long", f'key_file = "{tmp_path / "k"}"')
    run("bitacora", "--config", str(local), "run", "--from", days[0], "--to", days[-1])
    glued = tmp_path / "g.toml"
    glued.write_text(local.read_text() + '[catalog]\nkind = "glue"\ndatabase = "mobile"\n')
    for d in days:
        run("bitacora-catalog", "--config", str(glued), "--date", d)
    files = {
        d: len(json.loads(s3.get_object(Bucket="lake", Key=f"long/_manifests/transform/dt={d}.json")["Body"].read())
               ["outputs"]["events"]["files"])
        for d in days
    }

    proxy = FaultProxy(aws["env"]["AWS_ENDPOINT_URL"])
    seen: list[tuple[str, str, str]] = []
    proxy.hooks.append(lambda m, p, h, b: seen.append((m, unquote(p), h.get("X-Amz-Target") or h.get("x-amz-target") or "")))
    env = {"AWS_ENDPOINT_URL": proxy.url}
    try:
        def count(config, sql):
            seen.clear()
            out = json.loads(run("bitacora-query", "--config", str(config), "--format", "json", sql, env=env).stdout)
            return out[0]["n"], list(seen)

        one = f"SELECT count(*) AS n FROM events WHERE dt = '{DAY}'"
        n_local, reqs = count(local, one)
        others = [d for d in days if d != DAY]
        assert not [r for r in reqs if any(f"dt={d}" in r[1] for d in others)], reqs
        docs = [r for r in reqs if r[0] == "GET" and "/_catalog/" in r[1] and "/partitions/dt=" in r[1]]
        assert len(docs) == 1, reqs
        heads = [r for r in reqs if r[0] == "HEAD" and "/events/dt=" in r[1]]
        assert len(heads) == files[DAY], reqs

        n_glue, reqs = count(glued, one)
        assert n_glue == n_local > 0
        assert not [r for r in reqs if any(f"dt={d}" in r[1] for d in others)], reqs
        targets = [r[2].split(".")[-1] for r in reqs if r[2]]
        assert targets.count("BatchGetPartition") == 1 and "GetPartition" not in targets, targets

        every = "SELECT count(*) AS n FROM events"
        n_all, reqs = count(local, every)
        assert n_all > n_local
        docs = [r for r in reqs if r[0] == "GET" and "/_catalog/" in r[1] and "/partitions/dt=" in r[1]]
        assert sorted(docs) == sorted(set(docs)) and len(docs) == len(days), reqs
        assert count(glued, every)[0] == n_all
    finally:
        proxy.close()

"""The stream service's AWS sinks against moto: SQS (standard and FIFO), SNS fanned out to SQS
with a filter policy on the message attributes, Firehose to S3, Kinesis with a partition key —
every matching record arrives once, as the routed record; a sink the service refuses (a queue
that does not exist) sends its records to the dead letters with AWS's reason while the other
routes keep flowing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import bin_dir, free_port


def message(i: int, event_type: str) -> str:
    return json.dumps(
        {
            "event_id": f"ev-{i}",
            "ts": "2026-11-18T10:00:00.000Z",
            "level": "ERROR" if event_type == "crash" else "INFO",
            "event_type": event_type,
            "user_id": f"user-{i % 7}",
            "session_id": f"s-{i % 5}",
            "app_version": "3.2.1",
            "platform": "ios" if i % 2 == 0 else "android",
            "latency_ms": i % 300,
            "props": {"i": i},
        }
    )


class Stream:
    """A bitacora-stream process on a free port; stopped (process group and all) at the end."""

    def __init__(self, config: Path, env: dict):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(bin_dir() / "bitacora-stream"), "--config", str(config)],
            env={**os.environ, **env, "BITACORA_STREAM_LISTEN": f"127.0.0.1:{self.port}", "BITACORA_LOG": "warn"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.kill()
                    out, err = self.proc.communicate(timeout=10)
                    pytest.fail(f"bitacora-stream did not start: {err}")
                time.sleep(0.1)

    def post(self, lines: list[str]) -> tuple[int, dict]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/logs", data=("\n".join(lines) + "\n").encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def stream_proc():
    started = []

    def start(config: Path, env: dict) -> Stream:
        s = Stream(config, env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def drain_queue(sqs, url: str, want: int, attributes: bool = False) -> list[dict]:
    """Every message of a queue (bounded in time), deleted as read."""
    got: list[dict] = []
    deadline = time.time() + 20
    while len(got) < want and time.time() < deadline:
        r = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"] if attributes else []
        )
        msgs = r.get("Messages", [])
        if not msgs:
            time.sleep(0.2)
            continue
        for m in msgs:
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


def test_aws_sinks_deliver_routed_records_and_dead_letter_refusals(aws, tmp_path, stream_proc):
    sqs, sns, s3 = aws["client"]("sqs"), aws["client"]("sns"), aws["client"]("s3")
    firehose, kinesis = aws["client"]("firehose"), aws["client"]("kinesis")

    purchases = sqs.create_queue(QueueName="purchases")["QueueUrl"]
    fifo = sqs.create_queue(QueueName="crashes.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    topic = sns.create_topic(Name="events")["TopicArn"]
    every = sqs.create_queue(QueueName="every")["QueueUrl"]
    errors = sqs.create_queue(QueueName="errors")["QueueUrl"]

    def subscribe(queue_url: str, **attrs):
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true", **attrs})

    subscribe(every)
    subscribe(errors, FilterPolicy=json.dumps({"level": ["ERROR"]}))
    s3.create_bucket(Bucket="archive")
    firehose.create_delivery_stream(
        DeliveryStreamName="archive",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": "arn:aws:s3:::archive",
            "Prefix": "events/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
        },
    )
    kinesis.create_stream(StreamName="by-user", ShardCount=2)
    missing = purchases.rsplit("/", 1)[0] + "/no-such-queue"

    d = tmp_path
    config = d / "bitacora.toml"
    config.write_text(
        f"""
[stream]
data_dir = "{d}/data"
[stream.dedup]
kind = "memory"
[[stream.routes]]
name = "purchases"
match = {{ event_type = "purchase" }}
sink = {{ kind = "sqs", queue_url = "{purchases}" }}
[[stream.routes]]
name = "crashes"
match = {{ event_type = "crash" }}
sink = {{ kind = "sqs", queue_url = "{fifo}", message_group_id = "crashes" }}
[[stream.routes]]
name = "fanout"
sink = {{ kind = "sns", topic_arn = "{topic}" }}
[[stream.routes]]
name = "archive"
sink = {{ kind = "firehose", delivery_stream_name = "archive" }}
[[stream.routes]]
name = "by-user"
sink = {{ kind = "kinesis", stream_name = "by-user", partition_key = "user_id" }}
[[stream.routes]]
name = "broken"
match = {{ event_type = "purchase" }}
sink = {{ kind = "sqs", queue_url = "{missing}" }}
retry = {{ max_attempts = 2, initial_backoff_ms = 10, max_backoff_ms = 20 }}
"""
    )
    svc = stream_proc(config, aws["env"])
    kinds = ["purchase", "crash", "screen_view"]
    lines = [message(i, kinds[i % 3]) for i in range(60)]
    status, body = svc.post(lines)
    assert status == 200, body
    assert body == {"accepted": 60, "duplicates": 0, "quarantined": 0}
    # Sent again: every copy is a duplicate, nothing more reaches AWS.
    assert svc.post(lines)[1]["duplicates"] == 60
    report = svc.stop()
    routes = {r["name"]: r for r in report["routes"]}
    assert routes["purchases"]["delivered"] == 20
    assert routes["broken"] == {"name": "broken", "delivered": 0, "dead_lettered": 20}

    # SQS: the routed record as the body, once each.
    bodies = [json.loads(m["Body"]) for m in drain_queue(sqs, purchases, 20)]
    assert sorted(b["event_id"] for b in bodies) == sorted(f"ev-{i}" for i in range(0, 60, 3))
    assert {b["event_type"] for b in bodies} == {"purchase"}
    assert bodies[0]["dt"] == "2026-11-18" and bodies[0]["properties"]["i"] % 3 == 0
    assert not drain_queue(sqs, purchases, 1)
    # FIFO: its group, the record's id as the deduplication id.
    crash = drain_queue(sqs, fifo, 20)
    assert sorted(json.loads(m["Body"])["event_id"] for m in crash) == sorted(f"ev-{i}" for i in range(1, 60, 3))

    # SNS → SQS: every record, with the message attributes a filter policy reads.
    fanned = drain_queue(sqs, every, 60, attributes=True)
    assert len(fanned) == 60
    first = fanned[0]
    record = json.loads(first["Body"])
    assert first["MessageAttributes"]["event_type"]["StringValue"] == record["event_type"]
    assert first["MessageAttributes"]["platform"]["StringValue"] == record["platform"]
    only_errors = drain_queue(sqs, errors, 20)
    assert len(only_errors) == 20
    assert {json.loads(m["Body"])["level"] for m in only_errors} == {"ERROR"}

    # Firehose → S3: NDJSON of routed records.
    objects = s3.list_objects_v2(Bucket="archive").get("Contents", [])
    assert objects, "Firehose wrote nothing to S3"
    archived = []
    for o in objects:
        text = s3.get_object(Bucket="archive", Key=o["Key"])["Body"].read().decode()
        archived += [json.loads(line) for line in text.splitlines() if line]
    assert sorted(r["event_id"] for r in archived) == sorted(f"ev-{i}" for i in range(60))

    # Kinesis: every record once, a user's records on one shard.
    shards = kinesis.list_shards(StreamName="by-user")["Shards"]
    by_shard: dict[str, list[dict]] = {}
    for sh in shards:
        it = kinesis.get_shard_iterator(StreamName="by-user", ShardId=sh["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        out = kinesis.get_records(ShardIterator=it, Limit=1000)
        by_shard[sh["ShardId"]] = [json.loads(r["Data"]) | {"_key": r["PartitionKey"]} for r in out["Records"]]
    got = [r for rs in by_shard.values() for r in rs]
    assert sorted(r["event_id"] for r in got) == sorted(f"ev-{i}" for i in range(60))
    assert all(r["_key"] == r["user_id"] for r in got)
    for user in {r["user_id"] for r in got}:
        assert sum(1 for rs in by_shard.values() if any(r["user_id"] == user for r in rs)) == 1, user

    # The refused route: dead letters with AWS's reason, the record embedded.
    dead = [
        json.loads(line)
        for f in sorted((d / "data" / "dead-letter" / "broken").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len(dead) == 20
    assert dead[0]["route"] == "broken" and dead[0]["attempts"] == 1
    assert "NonExistentQueue" in dead[0]["reason"] or "QueueDoesNotExist" in dead[0]["reason"], dead[0]["reason"]
    assert dead[0]["record"]["event_type"] == "purchase"


def test_aws_sink_settings_are_checked_before_start(aws, tmp_path):
    config = tmp_path / "bitacora.toml"
    config.write_text(
        f"""
[stream]
data_dir = "{tmp_path}/data"
[[stream.routes]]
name = "bad"
sink = {{ kind = "sns", topic_arn = "not-an-arn" }}
"""
    )
    proc = subprocess.run(
        [str(bin_dir() / "bitacora-stream"), "--config", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, **aws["env"]},
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "stream.routes[0].sink.topic_arn" in proc.stderr
    assert "arn:aws:sns:REGION:ACCOUNT:NAME" in proc.stderr

"""The CloudWatch Logs source against a local endpoint (moto): a generated day is put into a log
group with PutLogEvents, extracted from there, and gives the answers of the embedded file source."""

from __future__ import annotations

import datetime as dt
import glob
import gzip
import json

from conftest import local_config, named_answers, run

# CloudWatch refuses events older than 14 days: use a recent, settled day.
DAY = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)).isoformat()
GROUP = "/mobile/app"


def answers(config, day=DAY) -> dict:
    return named_answers(config, day)


def read_lines(logs):
    for path in glob.glob(str(logs / "**" / "*.jsonl*"), recursive=True):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            for line in f:
                yield json.loads(line)


def put_day(logs_client, logs):
    """Puts every generated event into the log group, stream by stream, in time order."""
    logs_client.create_log_group(logGroupName=GROUP)
    streams: dict[str, list] = {}
    for ev in read_lines(logs):
        streams.setdefault(ev["logStreamName"], []).append({"timestamp": ev["timestamp"], "message": ev["message"]})
    total = 0
    for name, events in streams.items():
        logs_client.create_log_stream(logGroupName=GROUP, logStreamName=name)
        events.sort(key=lambda e: e["timestamp"])
        for i in range(0, len(events), 2000):
            r = logs_client.put_log_events(logGroupName=GROUP, logStreamName=name, logEvents=events[i : i + 2000])
            assert not r.get("rejectedLogEventsInfo"), r["rejectedLogEventsInfo"]
        total += len(events)
    return total


def test_cloudwatch_day_gives_the_embedded_answers(aws, tmp_path):
    logs = tmp_path / "logs"
    gen = json.loads(run("bitacora", "generate", "--date", DAY, "--events", "4000", "--out", str(logs), "--seed", "8").stdout)
    put = put_day(aws["client"]("logs"), logs)
    assert put == gen["records"]

    embedded = local_config(tmp_path / "embedded.toml", logs, tmp_path / "lake1", tmp_path / "k")
    run("bitacora", "--config", str(embedded), "run", "--from", DAY, "--to", DAY)

    config = tmp_path / "cw.toml"
    # Small pages and many slices: every slice pages through several empty and full pages.
    config.write_text(
        f'[source]\nkind = "cloudwatch"\nlog_group = "{GROUP}"\nslices = 48\npage_size = 50\nmax_requests_per_second = 200\n'
        f'[lake]\nroot = "{tmp_path / "lake2"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n'
    )
    report = json.loads(run("bitacora-extract", "--config", str(config), "--date", DAY).stdout)
    assert report["source"] == f"cloudwatch:{GROUP}"
    assert report["units"] == 48
    assert report["selected"] == gen["in_day"]
    run("bitacora-transform", "--config", str(config), "--date", DAY)
    run("bitacora-catalog", "--config", str(config), "--date", DAY)
    assert answers(config) == answers(embedded)

    # Re-running the day (the documented way to pick up late events) changes nothing.
    again = json.loads(run("bitacora-extract", "--config", str(config), "--date", DAY).stdout)
    assert again["selected"] == report["selected"]
    run("bitacora-transform", "--config", str(config), "--date", DAY)
    run("bitacora-catalog", "--config", str(config), "--date", DAY)
    assert answers(config) == answers(embedded)


def test_unsettled_day_is_refused_unless_forced(aws, tmp_path):
    aws["client"]("logs").create_log_group(logGroupName=GROUP)
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    config = tmp_path / "cw.toml"
    config.write_text(f'[source]\nkind = "cloudwatch"\nlog_group = "{GROUP}"\n[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n')
    proc = run("bitacora-extract", "--config", str(config), "--date", today, check=False)
    assert proc.returncode == 2, proc.stdout
    assert "settle_minutes" in json.loads(proc.stdout)["error"]
    forced = json.loads(run("bitacora-extract", "--config", str(config), "--date", today, "--force").stdout)
    assert forced["selected"] == 0


def test_missing_log_group_fails_naming_it(aws, tmp_path):
    config = tmp_path / "cw.toml"
    config.write_text(f'[source]\nkind = "cloudwatch"\nlog_group = "/nope"\nslices = 2\n[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n')
    proc = run("bitacora-extract", "--config", str(config), "--date", DAY, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["error"]
    assert "/nope" in err and "ResourceNotFoundException" in err, err

"""The whole batch path on the AWS backends, as issue #3 states it: a generated day put into
CloudWatch Logs, extract → transform → catalog on an s3:// lake with SSE-KMS and the Glue catalog,
answers equal to the embedded run, and the failure paths that the local endpoint cannot produce on
its own (a repeated nextToken, a failed Athena query, a failed Spark job), made by the proxy."""

from __future__ import annotations

import json

import pytest

from conftest import local_config, named_answers, run, s3_keys
from faultproxy import FaultProxy
from test_aws_cloudwatch import DAY, GROUP, put_day


def answers(config, env=None) -> dict:
    return named_answers(config, DAY, env)


def target_of(headers) -> str:
    return headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""


@pytest.fixture
def proxy(aws):
    p = FaultProxy(aws["env"]["AWS_ENDPOINT_URL"])
    yield p
    p.close()


def test_cloudwatch_to_s3_sse_kms_and_glue(aws, tmp_path):
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "5000", "--out", str(logs), "--seed", "12")
    put_day(aws["client"]("logs"), logs)
    s3, kms, glue = aws["client"]("s3"), aws["client"]("kms"), aws["client"]("glue")
    s3.create_bucket(Bucket="acme-logs")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    embedded = local_config(tmp_path / "embedded.toml", logs, tmp_path / "lake", tmp_path / "k")
    run("bitacora", "--config", str(embedded), "run", "--from", DAY, "--to", DAY)

    config = tmp_path / "aws.toml"
    config.write_text(
        f'[source]\nkind = "cloudwatch"\nlog_group = "{GROUP}"\nslices = 12\nmax_requests_per_second = 100\n'
        '[lake]\nroot = "s3://acme-logs/bitacora"\n'
        f'[encryption]\nmode = "sse-kms"\nkms_key_id = "{key_id}"\n'
        '[catalog]\nkind = "glue"\ndatabase = "mobile"\n'
    )
    first = json.loads(run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY).stdout)
    assert first["status"] == "ok", first
    assert answers(config) == answers(embedded)

    keys = s3_keys(s3, "acme-logs")
    assert any("/raw/" in k for k in keys) and any("/events/" in k for k in keys)
    for k in keys:
        head = s3.head_object(Bucket="acme-logs", Key=k)
        assert head.get("ServerSideEncryption") == "aws:kms" and head["SSEKMSKeyId"].endswith(key_id), k

    table = glue.get_table(DatabaseName="mobile", Name="events")["Table"]
    assert table["StorageDescriptor"]["Location"] == "s3://acme-logs/bitacora/events/"
    part = glue.get_partition(DatabaseName="mobile", TableName="events", PartitionValues=[DAY])["Partition"]
    manifest = json.loads(s3.get_object(Bucket="acme-logs", Key=f"bitacora/_manifests/transform/dt={DAY}.json")["Body"].read())
    assert part["StorageDescriptor"]["Location"] == f"s3://acme-logs/bitacora/{manifest['outputs']['events']['location']}/"

    # A second run of the day changes nothing a reader sees.
    run("bitacora", "--config", str(config), "run", "--from", DAY, "--to", DAY)
    assert answers(config) == answers(embedded)
    assert len(glue.get_partitions(DatabaseName="mobile", TableName="events")["Partitions"]) == 1


def test_a_repeated_next_token_fails_the_slice_instead_of_looping(aws, proxy, tmp_path):
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "300", "--out", str(logs), "--seed", "3")
    put_day(aws["client"]("logs"), logs)

    def stuck_token(method, path, headers, body, forward):
        if "FilterLogEvents" not in target_of(headers):
            return None
        status, h, data = forward(body)
        page = json.loads(data)
        page["nextToken"] = "the-same-token"
        return status, h, json.dumps(page).encode()

    proxy.rewriters.append(stuck_token)
    config = tmp_path / "cw.toml"
    config.write_text(f'[source]\nkind = "cloudwatch"\nlog_group = "{GROUP}"\nslices = 1\n[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n')
    proc = run("bitacora-extract", "--config", str(config), "--date", DAY, env={"AWS_ENDPOINT_URL": proxy.url}, check=False)
    assert proc.returncode == 1
    assert "same nextToken twice" in json.loads(proc.stdout)["error"]


def test_a_failed_athena_query_reports_athenas_reason(aws, proxy, tmp_path):
    def failed(method, path, headers, body, forward):
        if "GetQueryExecution" not in target_of(headers):
            return None
        status, h, data = forward(body)
        q = json.loads(data)
        q["QueryExecution"]["Status"] = {"State": "FAILED", "StateChangeReason": "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"}
        return status, h, json.dumps(q).encode()

    proxy.rewriters.append(failed)
    config = tmp_path / "athena.toml"
    config.write_text(f'[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n[query]\nengine = "athena"\nworkgroup = "primary"\noutput_location = "s3://results/"\n')
    proc = run("bitacora-query", "--config", str(config), "SELECT nope FROM events", env={"AWS_ENDPOINT_URL": proxy.url}, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["error"]
    assert "failed" in err and "COLUMN_NOT_FOUND" in err, err


def test_a_failed_glue_job_run_fails_the_step_with_its_message(aws, proxy, tmp_path):
    logs = tmp_path / "logs"
    run("bitacora", "generate", "--date", DAY, "--events", "300", "--out", str(logs), "--seed", "3")
    config = tmp_path / "glue.toml"
    config.write_text(
        f'[source]\npath = "{logs}"\n[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nmode = "none"\n'
        '[transform]\nengine = "glue"\nglue_job = "bitacora-transform"\npoll_max_secs = 1\n'
    )
    run("bitacora-extract", "--config", str(config), "--date", DAY)
    aws["client"]("glue").create_job(Name="bitacora-transform", Role="arn:aws:iam::123456789012:role/glue",
                                      Command={"Name": "glueetl", "ScriptLocation": "s3://code/t.py"})

    def failed(method, path, headers, body, forward):
        if "AWSGlue.GetJobRun" not in target_of(headers):
            return None
        status, h, data = forward(body)
        jr = json.loads(data)
        jr["JobRun"]["JobRunState"] = "FAILED"
        jr["JobRun"]["ErrorMessage"] = "An error occurred while calling o91.parquet: Access Denied"
        return status, h, json.dumps(jr).encode()

    proxy.rewriters.append(failed)
    proc = run("bitacora-transform", "--config", str(config), "--date", DAY, env={"AWS_ENDPOINT_URL": proxy.url}, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["error"]
    assert "bitacora-transform" in err and "FAILED" in err and "Access Denied" in err, err
    # Nothing was published: the day has no transform manifest.
    assert not (tmp_path / "lake" / "_manifests" / "transform").exists()

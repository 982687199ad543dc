"""The Athena engine against a local endpoint (moto): Athena runs nothing there, so results are
seeded through moto's API; what is checked is ours: start, poll, read every row, type the columns,
render every format, and refuse statements that write."""

from __future__ import annotations

import json
import urllib.request

from conftest import run

COLUMNS = [("dt", "varchar"), ("events", "bigint"), ("errors", "integer"), ("rate", "double"), ("flag", "boolean"), ("day", "date"), ("at", "timestamp"), ("amount", "decimal")]


def seed(endpoint, rows):
    body = {
        "results": [
            {
                "column_info": [{"Name": n, "Label": n, "Type": t, "Nullable": "UNKNOWN"} for n, t in COLUMNS],
                "rows": [{"Data": [{"VarCharValue": n} for n, _ in COLUMNS]}]
                + [{"Data": [({"VarCharValue": v} if v is not None else {}) for v in r]} for r in rows],
            }
        ]
    }
    req = urllib.request.Request(
        f"{endpoint}/moto-api/static/athena/query-results", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req, timeout=5)


def config(tmp_path):
    c = tmp_path / "athena.toml"
    c.write_text(
        f'[lake]\nroot = "{tmp_path / "lake"}"\n[encryption]\nkey_file = "{tmp_path / "k"}"\n'
        '[query]\nengine = "athena"\nworkgroup = "primary"\noutput_location = "s3://athena-results/"\n'
    )
    return c


ROWS = [
    ["2026-11-02", "1200", "7", "0.58", "true", "2026-11-02", "2026-11-02 10:15:00.250", "12.50"],
    ["2026-11-03", "900", None, "1.5e-1", "false", "2026-11-03", "2026-11-03 00:00:00", None],
]


def test_athena_results_are_typed_and_rendered(aws, tmp_path):
    seed(aws["env"]["AWS_ENDPOINT_URL"], ROWS)
    out = json.loads(run("bitacora-query", "--config", str(config(tmp_path)), "--format", "json", "SELECT * FROM events").stdout)
    assert out == [
        {"dt": "2026-11-02", "events": 1200, "errors": 7, "rate": 0.58, "flag": True, "day": "2026-11-02",
         "at": "2026-11-02T10:15:00.250", "amount": "12.50"},
        {"dt": "2026-11-03", "events": 900, "errors": None, "rate": 0.15, "flag": False, "day": "2026-11-03",
         "at": "2026-11-03T00:00:00", "amount": None},
    ]

    seed(aws["env"]["AWS_ENDPOINT_URL"], ROWS)
    csv = run("bitacora-query", "--config", str(config(tmp_path)), "--format", "csv", "SELECT * FROM events").stdout
    assert csv.splitlines()[0] == "dt,events,errors,rate,flag,day,at,amount"
    assert len(csv.splitlines()) == 3

    seed(aws["env"]["AWS_ENDPOINT_URL"], ROWS)
    table = run("bitacora-query", "--config", str(config(tmp_path)), "SELECT * FROM events").stdout
    assert "| dt " in table and "1200" in table


def test_athena_refuses_writes_before_calling_aws(aws, tmp_path):
    for sql in [
        "DROP TABLE events", "MSCK REPAIR TABLE events", "SELECT 1; DROP TABLE events",
        # Trino runs the statement that EXPLAIN ANALYZE explains.
        "EXPLAIN ANALYZE INSERT INTO events SELECT * FROM events", "/* */ explain  analyze DELETE FROM events",
    ]:
        proc = run("bitacora-query", "--config", str(config(tmp_path)), sql, check=False)
        assert proc.returncode == 1
        assert "read-only" in json.loads(proc.stdout)["error"]
    executions = aws["client"]("athena").list_query_executions()["QueryExecutionIds"]
    assert executions == []


def test_athena_results_are_read_page_by_page(aws, tmp_path):
    """Athena returns at most 1,000 rows a page: a proxy splits the seeded result into pages of two
    rows, with NextToken, and every row must come back once, in order, with the header only once."""
    from faultproxy import FaultProxy

    endpoint = aws["env"]["AWS_ENDPOINT_URL"]
    many = [[f"2026-11-{d:02d}", str(d * 10), str(d), "0.5", "true", f"2026-11-{d:02d}", f"2026-11-{d:02d} 00:00:00", "1.00"] for d in range(1, 8)]
    seed(endpoint, many)
    proxy = FaultProxy(endpoint)
    pages = []

    def paginate(method, path, headers, body, forward):
        if "AmazonAthena.GetQueryResults" not in (headers.get("X-Amz-Target") or headers.get("x-amz-target") or ""):
            return None
        req = json.loads(body)
        status, rheaders, data = forward(json.dumps({k: v for k, v in req.items() if k != "NextToken"}).encode())
        full = json.loads(data)
        rows = full["ResultSet"]["Rows"]
        start = int(req.get("NextToken") or 0)
        size = 3 if start == 0 else 2  # the header rides in the first page
        page = dict(full)
        page["ResultSet"] = dict(full["ResultSet"], Rows=rows[start : start + size])
        if start + size < len(rows):
            page["NextToken"] = str(start + size)
        pages.append(start)
        return status, rheaders, json.dumps(page).encode()

    proxy.rewriters.append(paginate)
    try:
        out = json.loads(run("bitacora-query", "--config", str(config(tmp_path)), "--format", "json",
                             "SELECT * FROM events", env={"AWS_ENDPOINT_URL": proxy.url}).stdout)
    finally:
        proxy.close()
    assert len(pages) == 4, pages
    assert [r["events"] for r in out] == [d * 10 for d in range(1, 8)]


def test_named_queries_send_their_athena_form(aws, tmp_path):
    """With query.engine = "athena", a named query sends Athena its Trino form (no percentile_cont,
    which Athena does not have) for the day asked."""
    seed(aws["env"]["AWS_ENDPOINT_URL"], ROWS)
    run("bitacora-query", "--config", str(config(tmp_path)), "--format", "json",
        "--named", "p95_latency_by_platform", "--date", "2026-11-02")
    athena = aws["client"]("athena")
    (qid,) = athena.list_query_executions()["QueryExecutionIds"]
    sent = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Query"]
    assert "approx_percentile(latency_ms, 0.95)" in sent and "percentile_cont" not in sent
    assert "dt = '2026-11-02'" in sent

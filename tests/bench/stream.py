"""Stream benchmark: bitacora-stream's sustained events/s (HTTP ingest -> Redis dedup ->
normalise -> file route) next to `redis-benchmark -P 64 -t set` in the same run, the
ingest-to-file latency at 10k events/s, the service's peak RSS, Redis memory per million keys, and
the Kinesis source's events/s on one shard of a moto server (moto from the test venv).

    bash tests/bench/stream.sh [--records N] [--kinesis-records N] [--concurrency C]

By hand, not in CI. Starts its own redis-server and service on free ports, stops them after.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    until = time.time() + timeout
    while time.time() < until:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def redis_info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", section], capture_output=True, text=True).stdout
    return dict(l.split(":", 1) for l in out.splitlines() if ":" in l)


def cpu_secs(pid):
    """User + system CPU seconds of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu(port):
    i = redis_info(port, "cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--kinesis-records", type=int, default=20_000)
    # Requests in flight while measuring the throughput: enough to keep both cores busy (with 8
    # the CPUs were 15-20 % idle, the service waiting on Redis and Redis on the service).
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    bins = args.bin_dir
    tmp = tempfile.mkdtemp(prefix="bitacora-stream-bench-")
    rport = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        stdout=subprocess.DEVNULL, start_new_session=True)
    svc = None
    try:
        wait_port(rport, "redis-server")
        def bench(cmd, tag, requests=2_000_000, pipeline=64):
            """redis-benchmark of `cmd` over random keys: requests per second (then FLUSHALL)."""
            out = subprocess.run(["redis-benchmark", "-p", str(rport), "-q", "-n", str(requests), "-P", str(pipeline),
                                  "-r", "100000000", *cmd], capture_output=True, text=True).stdout
            m = re.findall(tag + r": ([\d.]+) requests per second", out.replace("\r", "\n"))
            subprocess.run(["redis-cli", "-p", str(rport), "flushall"], capture_output=True)
            return float(m[-1]) if m else float("nan")
        redis_sets = bench(["-t", "set"], "SET")
        # The dedup's own commands, alone: what Redis can do for the service on this machine if it
        # had a core to itself. Records with a time of their own are fields of their window's hash,
        # claimed by one script call per hash and batch (CLAIM in tasks/stream/src/dedup/redis.rs,
        # read from there; here 125 new fields a call, as a live batch of 1,000 records over 8 shards
        # sends); one stamped on arrival is a key with the dedup window as its expiry (SET … NX PX GET).
        src = open(os.path.join(os.path.dirname(__file__), "../../tasks/stream/src/dedup/redis.rs")).read()
        script = re.search(r'const CLAIM: &str = "(.*?)";', src).group(1)
        assert "\\" not in script, "the CLAIM script has escapes: unescape it here"
        sha = subprocess.run(["redis-cli", "-p", str(rport), "script", "load", script],
                             capture_output=True, text=True, check=True).stdout.strip()
        fields = 125
        claim_sets = fields * bench(["EVALSHA", sha, "1", "bitacora:seen:#w179499600:7", "0123456789abcdef-1f2",
                                     "86400000", *["ev-__rand_int__-0123456789"] * fields], "",
                                    requests=16_000, pipeline=2)
        key_sets = bench(["SET", "bitacora:seen:ev-__rand_int__-0123456789", "0123456789abcdef-1f2", "NX", "PX",
                          "86400000", "GET"], "GET")
        sport = free_port()
        conf = os.path.join(tmp, "stream.toml")
        with open(conf, "w") as f:
            f.write(f"""[stream]
listen = "127.0.0.1:{sport}"
data_dir = "{tmp}/data"
queue_records = 400000
[stream.dedup]
kind = "redis"
url = "redis://127.0.0.1:{rport}/0"
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{tmp}/out" }}
""")
        svc = subprocess.Popen([f"{bins}/bitacora-stream", "--config", conf], stdout=subprocess.PIPE,
                               env={**os.environ, "BITACORA_LOG": "warn"}, start_new_session=True)
        wait_port(sport, "bitacora-stream")
        used0 = int(redis_info(rport, "memory")["used_memory"])

        def load(rate, seconds, extra=()):
            cmd = [f"{bins}/bitacora", "generate", "--stream", "--rate", str(rate), "--duration", str(seconds),
                   "--to", f"http://127.0.0.1:{sport}", "--duplicates", "0.02", *extra]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BITACORA_LOG": "warn"})
            if r.returncode != 0:
                sys.exit(f"load generator failed: {r.stdout} {r.stderr}")
            return json.loads(r.stdout)

        # Throughput: every request prepared first, sent as fast as the service takes them.
        n = args.records
        cpu0 = cpu_secs(svc.pid), redis_cpu(rport)
        t = load(10_000_000, n / 10_000_000, ["--pregenerate", "--batch", "1000", "--concurrency", str(args.concurrency)])
        cpu1 = cpu_secs(svc.pid), redis_cpu(rport)
        keys = int(redis_info(rport, "keyspace").get("db0", "keys=0").split(",")[0].split("=")[1])
        used1 = int(redis_info(rport, "memory")["used_memory"])
        # Latency at a steady 10k events/s.
        lat = load(10_000, 10, ["--batch", "100"])
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{sport}/metrics").read().decode()
        with open(f"/proc/{svc.pid}/status") as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) // 1024
        svc.send_signal(signal.SIGTERM)
        report = json.loads(svc.communicate(timeout=120)[0])
        rate = t["sent"] / t["seconds"]
        print(f"redis-benchmark -P 64 -t set: {redis_sets:,.0f} SET/s")
        print(f"redis-benchmark of the claim (the CLAIM script, {fields} new fields of a window's hash a call): {claim_sets:,.0f} fields/s "
              f"= {claim_sets / redis_sets:.2f} of -t set")
        print(f"redis-benchmark -P 64 of the claim of a record stamped on arrival (SET key owner NX PX 86400000 GET): "
              f"{key_sets:,.0f}/s = {key_sets / redis_sets:.2f} of -t set")
        print(f"bitacora-stream, {t['sent']:,} records, {args.concurrency} requests of 1000 in flight (HTTP -> redis dedup -> normalise -> file): "
              f"{t['seconds']:.2f} s, {rate:,.0f} events/s = {rate / redis_sets:.2f} of redis-benchmark, "
              f"{rate / claim_sets:.2f} of the claim alone")
        print(f"  accepted {t['accepted']:,}, duplicates {t['duplicates']:,}, quarantined {t['quarantined']:,}, "
              f"resent requests {t['resent_requests']}")
        print(f"  CPU per record: service {(cpu1[0] - cpu0[0]) / t['sent'] * 1e6:.2f} µs, "
              f"redis {(cpu1[1] - cpu0[1]) / t['sent'] * 1e6:.2f} µs (of {2 * t['seconds'] / t['sent'] * 1e6:.2f} µs "
              f"of both cores' time per record)")
        print(f"at 10k events/s: request (ingest -> written to the file route) p50 {lat['request_p50_ms']:.1f} ms, "
              f"p99 {lat['request_p99_ms']:.1f} ms (batches of 100)")
        print(f"service peak RSS: {hwm} MiB")
        if t["accepted"]:
            per = (used1 - used0) / t["accepted"]
            print(f"redis: {keys:,} keys (window hashes, round statuses, records stamped on arrival) for {t['accepted']:,} records: "
                  f"{per:.0f} bytes per record = {per * 1e6 / 2**20:.0f} MiB per million records")
        print(f"service report: accepted {report['accepted']:,}, routes {report['routes']}")
        assert "bitacora_stream_accepted_total" in metrics
        svc = None
        if args.kinesis_records:
            subprocess.run(["redis-cli", "-p", str(rport), "flushall"], capture_output=True)
            kinesis_bench(bins, tmp, rport, args.kinesis_records)
    finally:
        for p in (svc, redis):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        subprocess.run(["rm", "-rf", tmp])


def kinesis_bench(bins, tmp, rport, n):
    """The Kinesis source on one shard of moto: n records put first, then read, deduplicated,
    normalised and written to a file route; events/s from the service's start to the last one."""
    mport = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(mport)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    svc = None
    env = {**os.environ, "BITACORA_LOG": "warn", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{mport}",
           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_EC2_METADATA_DISABLED": "true"}
    try:
        wait_port(mport, "moto")
        import boto3
        k = boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{mport}", region_name="us-east-1",
                         aws_access_key_id="bench", aws_secret_access_key="bench")
        k.create_stream(StreamName="bench", ShardCount=1)
        t0 = time.time()
        r = subprocess.run([f"{bins}/bitacora", "generate", "--stream", "--rate", "10000000", "--duration",
                            str(n / 10_000_000), "--to", "kinesis://bench", "--duplicates", "0.02", "--pregenerate",
                            "--batch", "500", "--concurrency", "1"], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"load generator (kinesis) failed: {r.stdout} {r.stderr}")
        put = json.loads(r.stdout)
        put_secs = time.time() - t0
        sport = free_port()
        conf = os.path.join(tmp, "kinesis.toml")
        with open(conf, "w") as f:
            f.write(f"""[stream]
listen = "127.0.0.1:{sport}"
data_dir = "{tmp}/kdata"
[stream.source]
kind = "kinesis"
stream_name = "bench"
max_records = 10000
idle_ms = 200
[stream.dedup]
kind = "redis"
url = "redis://127.0.0.1:{rport}/0"
[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{tmp}/kout" }}
""")
        t0 = time.time()
        svc = subprocess.Popen([f"{bins}/bitacora-stream", "--config", conf], stdout=subprocess.PIPE, env=env,
                               start_new_session=True)
        wait_port(sport, "bitacora-stream (kinesis)")
        read, last_change, secs = 0, time.time(), 0.0
        while time.time() < t0 + 600 and time.time() - last_change < 15:
            text = urllib.request.urlopen(f"http://127.0.0.1:{sport}/metrics").read().decode()
            now_read = sum(int(float(m)) for m in re.findall(r'^bitacora_stream_shard_records_in_total\{[^}]*\} (\S+)$', text, re.M))
            if now_read != read:
                read, last_change = now_read, time.time()
                secs = last_change - t0
            if read >= put["accepted"]:
                break
            time.sleep(0.1)
        svc.send_signal(signal.SIGTERM)
        report = json.loads(svc.communicate(timeout=120)[0])
        print(f"kinesis (moto, 1 shard): put {put['accepted']:,} of {put['sent']:,} records in {put_secs:.1f} s; the service read {read:,} "
              f"in {secs:.1f} s from its start = {read / secs:,.0f} events/s per shard "
              f"(accepted {report['accepted']:,}, duplicates {report['duplicates']:,})")
    finally:
        for p in (svc, moto):
            if p and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    main()

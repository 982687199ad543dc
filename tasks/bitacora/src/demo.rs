//! `bitacora demo`: two weeks of synthetic logs through every batch step on the embedded defaults,
//! then the stakeholders' answers; then the streaming half: the stream service with its live
//! dashboard, fed by the load generator, with routes and an alert rule on file sinks.

use std::path::PathBuf;
use std::time::Instant;

use bitacora_core::config::EncryptionMode;
use bitacora_core::{Config, Day, Error, Result};
use bitacora_generate::{GenerateParams, generate};
use bitacora_query::{Format, render};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's logs, lake, key and configuration.
    #[arg(long, default_value = "bitacora-demo")]
    dir: PathBuf,
    /// Number of days, ending with --end.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Records per day.
    #[arg(long, default_value_t = 30_000)]
    events_per_day: u64,
    /// Last day (default: yesterday, UTC).
    #[arg(long, value_parser = bitacora_core::cli::parse_day)]
    end: Option<Day>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds of live traffic through the stream service (0: no streaming part).
    #[arg(long, default_value_t = 30)]
    stream_secs: u64,
    /// Records per second of that traffic.
    #[arg(long, default_value_t = 2000)]
    stream_rate: u64,
    /// Address of the stream service (its dashboard is at `/`).
    #[arg(long, default_value = "127.0.0.1:9880")]
    listen: String,
    /// After the traffic, keep the service (and its dashboard) up until Ctrl-C.
    #[arg(long)]
    keep_serving: bool,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    if args.days == 0 {
        return Err(Error::Usage("--days must be at least 1".into()));
    }
    let dir = std::path::absolute(&args.dir).map_err(|e| Error::io("resolve", &args.dir, e))?;
    let end = args.end.unwrap_or_else(|| Day::today().pred());
    let start = end.add_days(-(i64::from(args.days) - 1));
    let logs = dir.join("logs");

    eprintln!(
        "Bitácora demo: {} days ({start} .. {end}), {} records a day, in {}",
        args.days,
        args.events_per_day,
        dir.display()
    );
    let mut generated = 0;
    for day in Day::range_inclusive(start, end) {
        let r = generate(&GenerateParams::new(
            day,
            args.events_per_day,
            &logs,
            args.seed,
        ))?;
        generated += r.records;
    }
    eprintln!(
        "  generated {generated} log records under {}",
        logs.display()
    );

    let mut config = Config::default();
    config.source.path = logs.clone();
    config.lake.root = dir.join("lake").display().to_string();
    config.encryption.mode = EncryptionMode::Envelope;
    config.encryption.key_file = Some(dir.join("bitacora.key"));
    config.validate()?;
    let config_path = dir.join("bitacora.toml");
    std::fs::write(
        &config_path,
        format!("# Written by `bitacora demo`.\n{}", config.to_toml()),
    )
    .map_err(|e| Error::io("write", &config_path, e))?;

    let report = bitacora::pipeline::run_days(&config, start, end)?;
    let (mut read, mut events, mut quarantine, mut duplicates) = (0, 0, 0, 0);
    for d in &report.days {
        read += d.transform.read;
        events += d.transform.events;
        quarantine += d.transform.quarantine;
        duplicates += d.transform.duplicates;
    }
    eprintln!(
        "  extract → transform → catalog for {} days: read {read} = {events} events + {quarantine} quarantined + {duplicates} duplicates ({:.1} s)\n",
        report.days.len(),
        started.elapsed().as_secs_f64()
    );

    let answers: [(&str, Option<Day>, &str); 6] = [
        (
            "events_per_type",
            Some(end),
            "Events per type on the last day",
        ),
        ("daily_active_users", None, "Daily active users"),
        (
            "error_rate_by_version",
            None,
            "Error rate by app version (two weeks)",
        ),
        (
            "p95_latency_by_platform",
            None,
            "API latency by platform (two weeks)",
        ),
        ("top_error_codes", None, "Top error codes (two weeks)"),
        (
            "week_over_week",
            Some(end),
            "Week over week (7 days to the last day vs the 7 before)",
        ),
    ];
    for (name, date, title) in answers {
        let out = bitacora_query::named(&config, name, date)?;
        println!(
            "== {title}  [bitacora-query --named {name}{}]",
            date.map(|d| format!(" --date {d}")).unwrap_or_default()
        );
        print!("{}", render(&out, Format::Table)?);
        println!();
    }

    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("bitacora-query")))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "cargo run --release --quiet --bin bitacora-query --".into());
    let cfg = config_path.display();
    println!("The lake is in {}", config.lake.root);
    println!(
        "Its configuration: {cfg} (the key {} stays next to it, mode 0600)",
        dir.join("bitacora.key").display()
    );
    println!("Try next:");
    println!("  {bin} --config {cfg} --list");
    println!(
        "  {bin} --config {cfg} \"SELECT platform, app_version, count(*) AS events FROM events WHERE dt = '{end}' GROUP BY 1, 2 ORDER BY 3 DESC\""
    );
    println!("  {bin} --config {cfg} --named top_error_codes --date {end} --format json");
    if args.stream_secs > 0 {
        println!();
        stream_part(args, &dir)?;
    }
    eprintln!("Demo finished in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

/// The stream service's configuration of the demo: every event to files, errors and crashes
/// for the on-call, purchases and signups for marketing (user ids hashed, sessions dropped),
/// and an alert on the error rate of each app version.
fn stream_config(dir: &std::path::Path, listen: &str) -> String {
    let d = dir.join("stream");
    let d = d.display();
    format!(
        r#"# Written by `bitacora demo`: run it again with bitacora-stream --config {d}.toml
# (user ids of the marketing route are hashed with the key {d}/data/pii.key, made at first start)
[stream]
listen = "{listen}"
data_dir = "{d}/data"

[stream.dedup]
kind = "memory"

[[stream.routes]]
name = "everything"
sink = {{ kind = "file", path = "{d}/everything" }}

[[stream.routes]]
name = "oncall"
match = {{ level = ["ERROR"], event_type = ["crash", "error"] }}
sink = {{ kind = "file", path = "{d}/oncall" }}

[[stream.routes]]
name = "marketing"
match = {{ event_type = ["purchase", "signup"] }}
pii = {{ hash = ["user_id"], drop = ["session_id"] }}
sink = {{ kind = "file", path = "{d}/marketing" }}

[[stream.routes]]
name = "alerts"
match = {{ event_type = "alert" }}
sink = {{ kind = "file", path = "{d}/alerts" }}

[[stream.alerts]]
name = "error rate by app version"
kind = "error_rate"
group_by = "app_version"
threshold = 0.06
window_secs = 20
min_events = 3000
cooldown_secs = 300
severity = "critical"
notify = ["alerts"]
"#
    )
}

fn stream_part(args: &DemoArgs, dir: &std::path::Path) -> Result<()> {
    use bitacora_stream::StreamConfig;
    let text = stream_config(dir, &args.listen);
    let path = dir.join("stream.toml");
    std::fs::write(&path, &text).map_err(|e| Error::io("write", &path, e))?;
    let config = Config::from_toml_str(&text)?;
    let stream: StreamConfig = config.component()?;
    let stream_err = |e: bitacora_stream::Error| Error::external("stream", e);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::external("tokio runtime", e))?;
    runtime.block_on(async {
        let service = bitacora_stream::service::Running::start(config, stream)
            .await
            .map_err(stream_err)?;
        let addr = service.addr;
        println!(
            "== Streaming: {} records/s for {} s through bitacora-stream ({})",
            args.stream_rate,
            args.stream_secs,
            path.display()
        );
        println!("   Live dashboard: http://{addr}/   (open it now; /metrics for Prometheus)");
        let load = bitacora_stream::loadgen::run(&bitacora_stream::loadgen::LoadParams {
            to: format!("http://{addr}"),
            rate: args.stream_rate,
            duration: std::time::Duration::from_secs(args.stream_secs),
            duplicates: 0.02,
            seed: args.seed,
            batch: None,
            concurrency: 4,
            token: None,
            pregenerate: false,
        })
        .await;
        if args.keep_serving && load.is_ok() {
            println!("   The service stays up: Ctrl-C stops it.");
            let _ = tokio::signal::ctrl_c().await;
        }
        let report = service.stop().await.map_err(stream_err)?;
        let load = load.map_err(stream_err)?;
        println!(
            "   sent {} records ({} redelivered copies, {} text lines, {} malformed) at {:.0}/s",
            load.sent, load.redelivered, load.text, load.malformed, load.records_per_sec
        );
        println!(
            "   the service accepted {}, dropped {} duplicates, quarantined {}",
            report.accepted, report.duplicates, report.quarantined
        );
        for r in &report.routes {
            let folder = match r.name.as_str() {
                "quarantine" => dir.join("stream").join("data").join("quarantine"),
                name => dir.join("stream").join(name),
            };
            println!(
                "   route {:<11} {:>8} delivered → {}",
                r.name,
                r.delivered,
                folder.display()
            );
        }
        println!(
            "   Run it again with its dashboard: bitacora-stream --config {}",
            path.display()
        );
        Ok(())
    })
}

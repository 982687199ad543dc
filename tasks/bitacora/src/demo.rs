//! `bitacora demo`: two weeks of synthetic logs through every batch step on the embedded defaults,
//! then the stakeholders' answers.

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
    eprintln!("Demo finished in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}

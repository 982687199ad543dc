//! The embedded log source: a folder of NDJSON files shaped like CloudWatch `FilterLogEvents`
//! events, read recursively (`*.jsonl`, `*.jsonl.gz`, `*.jsonl.zst`).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use bitacora_core::config::SourceConfig;
use bitacora_core::source::{Emit, LogSource, SourceUnit, UnitStats};
use bitacora_core::{Day, Error, Result};

/// Bytes of a file looked at a time.
const READ_BLOCK: usize = 4 << 20;

/// Lines without a usable `timestamp` are logged individually up to this many per file.
const LOGGED_MALFORMED: u64 = 5;

#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
}

#[derive(serde::Deserialize)]
struct Timestamp {
    timestamp: i64,
}

impl FileSource {
    pub fn new(cfg: &SourceConfig) -> Result<Self> {
        if !cfg.path.is_dir() {
            return Err(Error::config(
                "source.path",
                format!("{} is not a folder", cfg.path.display()),
            ));
        }
        Ok(FileSource {
            root: cfg.path.clone(),
        })
    }

    fn walk(dir: &Path, out: &mut Vec<SourceUnit>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::Source {
            unit: dir.display().to_string(),
            message: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::Source {
                unit: dir.display().to_string(),
                message: e.to_string(),
            })?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| Error::Source {
                unit: path.display().to_string(),
                message: e.to_string(),
            })?;
            if ft.is_dir() {
                Self::walk(&path, out)?;
            } else if is_log_file(&path) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(SourceUnit {
                    id: path.display().to_string(),
                    size_hint: size,
                });
            }
        }
        Ok(())
    }
}

/// The envelope's `timestamp` when the line starts with it, as CloudWatch exports and
/// `bitacora generate` write it (`{"timestamp":1793577600123,...`). Other shapes take the full parse.
/// A record selected this way is still fully validated by the transform (quarantined if broken).
fn fast_timestamp(line: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"{\"timestamp\":";
    let rest = line.strip_prefix(KEY)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 || !matches!(rest.get(digits), Some(b',') | Some(b'}')) {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn is_log_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".jsonl.zst")
}

fn open(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let f = File::open(path)?;
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    } else if name.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(f)?)
    } else {
        Box::new(f)
    })
}

impl LogSource for FileSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn describe(&self) -> String {
        format!("files:{}", self.root.display())
    }

    fn plan(&self, _day: Day) -> Result<Vec<SourceUnit>> {
        let mut units = Vec::new();
        Self::walk(&self.root, &mut units)?;
        // Largest first, so that workers finish together; ties by path for a stable order.
        units.sort_by(|a, b| b.size_hint.cmp(&a.size_hint).then(a.id.cmp(&b.id)));
        Ok(units)
    }

    fn read(&self, unit: &SourceUnit, day: Day, emit: &mut Emit<'_>) -> Result<UnitStats> {
        let path = Path::new(&unit.id);
        let fail = |e: std::io::Error| Error::Source {
            unit: unit.id.clone(),
            message: e.to_string(),
        };
        let mut reader = open(path).map_err(fail)?;
        let mut stats = UnitStats::default();
        let number = std::cell::Cell::new(0u64);
        let mut block = Vec::new();
        bitacora_core::lines::for_each_line(
            &mut reader,
            &mut block,
            READ_BLOCK,
            |mut line| {
                number.set(number.get() + 1);
                let number = number.get();
                while let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    return Ok(());
                }
                stats.scanned += 1;
                let parsed = match fast_timestamp(line) {
                    Some(ts) => Ok(Timestamp { timestamp: ts }),
                    None => serde_json::from_slice::<Timestamp>(line),
                };
                match parsed {
                    Ok(t) if day.contains_ms(t.timestamp) => {
                        stats.selected += 1;
                        emit(line)?;
                    }
                    Ok(_) => stats.outside_window += 1,
                    Err(e) => {
                        stats.malformed += 1;
                        if stats.malformed <= LOGGED_MALFORMED {
                            tracing::warn!("rejected {}:{number}: not a log event ({e})", unit.id);
                        }
                    }
                }
                Ok(())
            },
            |e| Error::Source {
                unit: unit.id.clone(),
                message: format!("{e} (after line {})", number.get()),
            },
        )?;
        if stats.malformed > LOGGED_MALFORMED {
            tracing::warn!(
                "rejected {} more line(s) of {} without a usable timestamp",
                stats.malformed - LOGGED_MALFORMED,
                unit.id
            );
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::fast_timestamp;

    #[test]
    fn fast_timestamp_only_takes_the_leading_key() {
        assert_eq!(
            fast_timestamp(br#"{"timestamp":1793577600123,"message":"x"}"#),
            Some(1793577600123)
        );
        assert_eq!(fast_timestamp(br#"{"timestamp":17}"#), Some(17));
        assert_eq!(fast_timestamp(br#"{"timestamp":"17","message":"x"}"#), None);
        assert_eq!(fast_timestamp(br#"{"timestamp":17.5,"message":"x"}"#), None);
        assert_eq!(
            fast_timestamp(br#"{"message":"{\"timestamp\":1}","timestamp":5}"#),
            None
        );
        assert_eq!(fast_timestamp(br#"{"timestamp":-5,"message":"x"}"#), None);
    }
}

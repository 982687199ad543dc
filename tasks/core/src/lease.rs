//! Leases: at most one run of a step for a day at a time, on every lake.
//!
//! A run takes the lease of its `(step, day)` before it reads anything and holds it until it has
//! published (or failed). A second run of the same step and day is refused at once with
//! [`Error::Busy`] naming the run that holds it; runs of other steps or days are not affected.
//! A lease also records which published runs of earlier steps its holder reads (`reads`): the
//! publication of a new run never removes a run folder that a live lease still reads.
//!
//! * Local lakes (`file://`): an exclusive `flock` on `_leases/dt=D/<step>.json` in the lake folder.
//!   The kernel releases it when the holder exits, however it exits, so a killed run never holds
//!   a day. The file holds the holder's description while it is held, and is emptied on release.
//! * Cloud lakes (`s3://`, `gs://`): the object `_leases/dt=D/<step>.json`, created with a
//!   conditional write (`If-None-Match`) and renewed by a heartbeat with `If-Match` before it expires
//!   ([`crate::config::LakeConfig::lease_secs`]); a killed run's lease expires and the next run takes
//!   it over (again with `If-Match`, so only one run can). A holder that fails to renew in time has
//!   lost the lease and refuses to publish. Machines that share a lake need clocks within a small
//!   fraction of the lease time (NTP, as on EC2).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};

use crate::date::Day;
use crate::error::{Error, Result};
use crate::lake::{Lake, layout};

/// The default of `lake.lease_secs`: how long a cloud lease lasts without renewal (a killed run's
/// lease blocks its day this long).
pub const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// How long a local lease attempt waits for a lock that is only being probed by a publication
/// ([`live_reads`] takes a shared lock for an instant).
const LOCAL_PROBE_WAIT: Duration = Duration::from_millis(1_000);
const LOCAL_PROBE_STEP: Duration = Duration::from_millis(20);

/// Who holds a lease, and what it reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub step: String,
    pub date: Day,
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    pub acquired_at: String,
    /// Cloud leases: milliseconds since the epoch after which the lease is free unless renewed;
    /// 0 once released. Local leases: 0 (the lock itself says whether it is held).
    #[serde(default)]
    pub expires_at_ms: i64,
    /// Published runs of earlier steps the holder reads (`extract` → run id).
    #[serde(default)]
    pub reads: BTreeMap<String, String>,
}

impl Holder {
    fn describe(&self) -> String {
        format!(
            "run {} (pid {} on {}, since {})",
            self.run_id, self.pid, self.host, self.acquired_at
        )
    }

    /// Whether two records are of the same run (each run writes only records of its own).
    fn same_run(&self, other: &Holder) -> bool {
        self.run_id == other.run_id
            && self.pid == other.pid
            && self.host == other.host
            && self.acquired_at == other.acquired_at
    }

    fn live_at(&self, now_ms: i64) -> bool {
        self.expires_at_ms > now_ms
    }
}

/// A held lease; released when dropped.
pub struct Lease {
    step: String,
    date: Day,
    inner: Inner,
}

enum Inner {
    Local {
        file: File,
        path: PathBuf,
        holder: Holder,
    },
    Cloud(Cloud),
}

struct Cloud {
    lake: Lake,
    path: String,
    ttl: Duration,
    state: Arc<Mutex<CloudState>>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

struct CloudState {
    holder: Holder,
    version: UpdateVersion,
    /// Why the lease was lost (another run took it over), if it was.
    lost: Option<String>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("step", &self.step)
            .field("date", &self.date)
            .finish()
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn busy(step: &str, date: Day, holder: Option<&Holder>, until: Option<i64>) -> Error {
    let who = holder.map_or_else(
        || "another run (its description is not readable yet)".to_string(),
        Holder::describe,
    );
    let expiry = until
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| {
            format!(
                "; if it was killed, its lease expires at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        })
        .unwrap_or_default();
    Error::Busy(format!(
        "{step} of {date} is already running: {who}; this run did nothing — let that run finish, then run the step again if needed{expiry}"
    ))
}

impl Lease {
    /// Takes the lease of `(step, date)` for run `run_id`, or fails with [`Error::Busy`] naming the
    /// run that holds it. `ttl` applies to cloud lakes (renewed every third of it).
    pub fn acquire(
        lake: &Lake,
        step: &str,
        date: Day,
        run_id: &str,
        ttl: Duration,
    ) -> Result<Lease> {
        let holder = Holder {
            step: step.into(),
            date,
            run_id: run_id.into(),
            host: host_name(),
            pid: std::process::id(),
            acquired_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            expires_at_ms: 0,
            reads: BTreeMap::new(),
        };
        let inner = match lake.local_dir() {
            Some(dir) => acquire_local(dir.join(layout::lease(step, date)), holder)?,
            None => Inner::Cloud(acquire_cloud(lake, layout::lease(step, date), holder, ttl)?),
        };
        Ok(Lease {
            step: step.into(),
            date,
            inner,
        })
    }

    /// Records that the holder reads run `run_id` of `step`: from now on no publication removes it.
    pub fn record_read(&mut self, step: &str, run_id: &str) -> Result<()> {
        match &mut self.inner {
            Inner::Local { file, path, holder } => {
                holder.reads.insert(step.into(), run_id.into());
                write_local(file, path, holder)
            }
            Inner::Cloud(c) => {
                {
                    let mut st = c.state.lock().unwrap_or_else(PoisonError::into_inner);
                    st.holder.reads.insert(step.into(), run_id.into());
                    renew(&c.lake, &c.path, c.ttl, &mut st)?;
                }
                // A lease lost now protects nothing this run would read.
                self.check()
            }
        }
    }

    /// Fails unless the lease is still held (call right before publishing).
    pub fn check(&self) -> Result<()> {
        let Inner::Cloud(c) = &self.inner else {
            return Ok(());
        };
        let st = c.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(why) = &st.lost {
            return Err(Error::Busy(format!(
                "{} of {}: run {} lost its lease ({why}); it publishes nothing",
                self.step, self.date, st.holder.run_id
            )));
        }
        // Keep a margin: the publication itself takes a moment.
        let margin = (c.ttl / 10).as_millis() as i64;
        if st.holder.expires_at_ms - margin <= now_ms() {
            return Err(Error::Busy(format!(
                "{} of {}: the lease of run {} expired before it could publish (renewals failed); it publishes nothing",
                self.step, self.date, st.holder.run_id
            )));
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Local { file, .. } => {
                // Emptied first, so a reader never takes a released lease's record for a live one.
                let _ = file.set_len(0);
                let _ = file.unlock();
            }
            Inner::Cloud(c) => {
                drop(c.stop.take());
                if let Some(h) = c.heartbeat.take() {
                    let _ = h.join();
                }
                let mut st = c.state.lock().unwrap_or_else(PoisonError::into_inner);
                if st.lost.is_none() {
                    st.holder.expires_at_ms = 0;
                    let _ = write_own(&c.lake, &c.path, &st.holder, Some(st.version.clone()));
                }
            }
        }
    }
}

fn open_local(path: &PathBuf, write: bool) -> Result<File> {
    if write && let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create lease folder", parent, e))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .create(write)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io("open lease", path, e))
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_local(file: &mut File, path: &PathBuf, holder: &Holder) -> Result<()> {
    let body = serde_json::to_vec_pretty(holder).map_err(|e| Error::external("encode lease", e))?;
    let io = |e| Error::io("write lease", path, e);
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&body).map_err(io)?;
    file.sync_data().map_err(io)
}

fn acquire_local(path: PathBuf, holder: Holder) -> Result<Inner> {
    let mut file = open_local(&path, true)?;
    let deadline = std::time::Instant::now() + LOCAL_PROBE_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                // A publication probing the lease holds it shared for an instant; a run holds it
                // for good.
                if std::time::Instant::now() >= deadline {
                    let other = read_holder(&mut file);
                    return Err(busy(&holder.step, holder.date, other.as_ref(), None));
                }
                std::thread::sleep(LOCAL_PROBE_STEP);
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock lease", &path, e)),
        }
    }
    write_local(&mut file, &path, &holder)?;
    Ok(Inner::Local { file, path, holder })
}

fn acquire_cloud(lake: &Lake, path: String, mut holder: Holder, ttl: Duration) -> Result<Cloud> {
    // Absent at first (a create); taken already, it is free only if released or expired, and is
    // then taken over at the version read. Each attempt counts its expiry from now.
    let mut expected = None;
    let mut version = None;
    for _ in 0..4 {
        holder.expires_at_ms = now_ms() + ttl.as_millis() as i64;
        version = write_own(lake, &path, &holder, expected.take())?;
        if version.is_some() {
            break;
        }
        let Some((bytes, current)) = lake.get_versioned(&path)? else {
            continue;
        };
        let other: Option<Holder> = serde_json::from_slice(&bytes).ok();
        if let Some(o) = &other
            && o.live_at(now_ms())
        {
            return Err(busy(
                &holder.step,
                holder.date,
                Some(o),
                Some(o.expires_at_ms),
            ));
        }
        if let Some(o) = other.as_ref().filter(|o| o.expires_at_ms > 0) {
            tracing::warn!(
                "{} of {}: taking over the expired lease of {}",
                holder.step,
                holder.date,
                o.describe()
            );
        }
        expected = Some(current);
    }
    let Some(version) = version else {
        return Err(busy(&holder.step, holder.date, None, None));
    };
    let state = Arc::new(Mutex::new(CloudState {
        holder,
        version,
        lost: None,
    }));
    let (stop, stopped) = mpsc::channel::<()>();
    let heartbeat = {
        let (lake, path, state) = (lake.clone(), path.clone(), state.clone());
        std::thread::Builder::new()
            .name("bitacora-lease".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(ttl / 3) {
                    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Err(e) = renew(&lake, &path, ttl, &mut st) {
                        tracing::warn!("lease {}: renewal failed: {e}", lake.url_of(&path));
                    }
                    if st.lost.is_some() {
                        return;
                    }
                }
            })
            .map_err(|e| Error::external("start the lease heartbeat", e))?
    };
    Ok(Cloud {
        lake: lake.clone(),
        path,
        ttl,
        state,
        stop: Some(stop),
        heartbeat: Some(heartbeat),
    })
}

/// Writes this run's lease record `next` if the object is still as `expected` (absent, or at a
/// version). A refused or failed write may hide one of this run's own writes whose reply was lost
/// (the client retried a request that had landed, or the error reached us and the next attempt
/// used the old version): when the stored record is this run's, it is adopted — as is if it is
/// `next` itself, or overwritten at its version if it is an earlier record of this run still live
/// (one that expired is never brought back: others may already treat it as free).
fn write_own(
    lake: &Lake,
    path: &str,
    next: &Holder,
    expected: Option<UpdateVersion>,
) -> Result<Option<UpdateVersion>> {
    let body = serde_json::to_vec(next).map_err(|e| Error::external("encode lease", e))?;
    let outcome = match lake.put_if_version(path, body.clone(), expected) {
        Ok(Some(v)) => return Ok(Some(v)),
        other => other,
    };
    let Ok(Some((bytes, version))) = lake.get_versioned(path) else {
        return outcome;
    };
    let Ok(stored) = serde_json::from_slice::<Holder>(&bytes) else {
        return outcome;
    };
    if !stored.same_run(next) {
        return outcome;
    }
    if stored == *next {
        return Ok(Some(version));
    }
    if stored.live_at(now_ms()) {
        return lake.put_if_version(path, body, Some(version));
    }
    outcome
}

/// Rewrites a cloud lease with a new expiry, only if nobody changed it since we last wrote it.
fn renew(lake: &Lake, path: &str, ttl: Duration, st: &mut CloudState) -> Result<()> {
    if st.lost.is_some() {
        return Ok(());
    }
    // Expired, even if nobody took it over: a publication may already have treated it as free
    // (and removed what it read), so it is never brought back to life.
    if now_ms() >= st.holder.expires_at_ms {
        st.lost = Some("it expired before it could be renewed".into());
        return Ok(());
    }
    let mut next = st.holder.clone();
    next.expires_at_ms = now_ms() + ttl.as_millis() as i64;
    match write_own(lake, path, &next, Some(st.version.clone()))? {
        Some(v) => {
            st.version = v;
            st.holder = next;
        }
        None => {
            st.lost = Some(format!(
                "{} was changed by another run after this one's lease expired",
                lake.url_of(path)
            ));
        }
    }
    Ok(())
}

/// The runs that live leases of `date` read (any step): a publication keeps their folders.
pub fn live_reads(lake: &Lake, date: Day) -> Result<Vec<String>> {
    let mut runs = Vec::new();
    let dir = layout::lease_dir(date);
    match lake.local_dir() {
        Some(root) => {
            let dir = root.join(dir);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(runs),
                Err(e) => return Err(Error::io("list leases", &dir, e)),
            };
            for entry in entries {
                let path = entry.map_err(|e| Error::io("list leases", &dir, e))?.path();
                let mut file = open_local(&path, false)?;
                match file.try_lock_shared() {
                    // Nobody holds it: a released lease, or a killed run's.
                    Ok(()) => {
                        let _ = file.unlock();
                    }
                    Err(std::fs::TryLockError::WouldBlock) => {
                        if let Some(h) = read_holder(&mut file) {
                            runs.extend(h.reads.into_values());
                        }
                    }
                    Err(std::fs::TryLockError::Error(e)) => {
                        return Err(Error::io("probe lease", &path, e));
                    }
                }
            }
        }
        None => {
            let now = now_ms();
            for o in lake.list(&dir)? {
                let Some(bytes) = lake.get_opt(&o.path)? else {
                    continue;
                };
                if let Ok(h) = serde_json::from_slice::<Holder>(&bytes)
                    && h.live_at(now)
                {
                    runs.extend(h.reads.into_values());
                }
            }
        }
    }
    runs.sort();
    runs.dedup();
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LakeConfig;

    fn lake(dir: &std::path::Path) -> Lake {
        Lake::open(&LakeConfig {
            root: dir.join("lake").to_string_lossy().into_owned(),
            ..LakeConfig::default()
        })
        .unwrap()
    }

    fn day() -> Day {
        "2026-11-20".parse().unwrap()
    }

    #[test]
    fn a_second_run_of_a_step_and_day_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let ttl = Duration::from_secs(60);
        let held = Lease::acquire(&lake, "transform", day(), "run-a", ttl).unwrap();
        let e = Lease::acquire(&lake, "transform", day(), "run-b", ttl).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        let msg = e.to_string();
        assert!(
            msg.contains("transform of 2026-11-20 is already running"),
            "{msg}"
        );
        assert!(msg.contains("run run-a"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        // Other steps and days are independent.
        let other_step = Lease::acquire(&lake, "extract", day(), "run-c", ttl).unwrap();
        let other_day = Lease::acquire(&lake, "transform", day().succ(), "run-d", ttl).unwrap();
        drop((other_step, other_day));
        drop(held);
        Lease::acquire(&lake, "transform", day(), "run-b", ttl).unwrap();
    }

    #[test]
    fn reads_of_live_leases_are_reported_and_released_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let ttl = Duration::from_secs(60);
        assert!(live_reads(&lake, day()).unwrap().is_empty());
        let mut t = Lease::acquire(&lake, "transform", day(), "t1", ttl).unwrap();
        t.record_read("extract", "e1").unwrap();
        let mut c = Lease::acquire(&lake, "catalog", day(), "c1", ttl).unwrap();
        c.record_read("transform", "t0").unwrap();
        assert_eq!(live_reads(&lake, day()).unwrap(), vec!["e1", "t0"]);
        // Probing does not take the lease from its holder.
        assert!(Lease::acquire(&lake, "transform", day(), "t2", ttl).is_err());
        drop(t);
        assert_eq!(live_reads(&lake, day()).unwrap(), vec!["t0"]);
        drop(c);
        assert!(live_reads(&lake, day()).unwrap().is_empty());
        assert!(live_reads(&lake, day().succ()).unwrap().is_empty());
    }

    /// A store that injects the faults of a network between a run and its bucket into the puts
    /// of one object: a put that fails before reaching the store, or one that lands but whose
    /// reply is lost — surfaced as an error, or retried by the client (which then sees its own
    /// write as a conflict).
    mod faulty {
        use std::sync::Mutex;

        use async_trait::async_trait;
        use futures::stream::BoxStream;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::{
            CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
            ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
        };

        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum Fault {
            /// No fault for this put.
            Pass,
            /// The put never reaches the store.
            Fail,
            /// The put lands; its reply is lost and the caller gets an error.
            LoseReply,
            /// The put lands; its reply is lost and the client sends it again.
            LoseReplyAndRetry,
        }

        #[derive(Debug, Default)]
        pub struct Faulty {
            pub inner: InMemory,
            /// Faults for the next puts, in order.
            pub faults: Mutex<Vec<Fault>>,
            pub puts: Mutex<usize>,
        }

        impl Faulty {
            pub fn inject(&self, faults: &[Fault]) {
                let mut f = self.faults.lock().unwrap();
                f.clear();
                f.extend(faults.iter().rev());
            }

            pub fn puts(&self) -> usize {
                *self.puts.lock().unwrap()
            }
        }

        impl std::fmt::Display for Faulty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "Faulty({})", self.inner)
            }
        }

        fn lost() -> object_store::Error {
            object_store::Error::Generic {
                store: "faulty",
                source: "connection reset by peer".into(),
            }
        }

        #[async_trait]
        impl ObjectStore for Faulty {
            async fn put_opts(
                &self,
                location: &Path,
                payload: PutPayload,
                opts: PutOptions,
            ) -> Result<PutResult> {
                *self.puts.lock().unwrap() += 1;
                let fault = self.faults.lock().unwrap().pop();
                match fault {
                    None | Some(Fault::Pass) => self.inner.put_opts(location, payload, opts).await,
                    Some(Fault::Fail) => Err(lost()),
                    Some(Fault::LoseReply) => {
                        self.inner.put_opts(location, payload, opts).await?;
                        Err(lost())
                    }
                    Some(Fault::LoseReplyAndRetry) => {
                        self.inner
                            .put_opts(location, payload.clone(), opts.clone())
                            .await?;
                        self.inner.put_opts(location, payload, opts).await
                    }
                }
            }

            async fn put_multipart_opts(
                &self,
                location: &Path,
                opts: PutMultipartOptions,
            ) -> Result<Box<dyn MultipartUpload>> {
                self.inner.put_multipart_opts(location, opts).await
            }

            async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
                self.inner.get_opts(location, options).await
            }

            fn delete_stream(
                &self,
                locations: BoxStream<'static, Result<Path>>,
            ) -> BoxStream<'static, Result<Path>> {
                self.inner.delete_stream(locations)
            }

            fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
                self.inner.list(prefix)
            }

            async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
                self.inner.list_with_delimiter(prefix).await
            }

            async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
                self.inner.copy_opts(from, to, options).await
            }
        }
    }

    use faulty::{Fault, Faulty};

    fn cloud_lake() -> (Lake, Arc<Faulty>) {
        let store = Arc::new(Faulty::default());
        (Lake::over_store(store.clone(), "s3://lake/l/"), store)
    }

    fn stored(lake: &Lake, step: &str) -> Holder {
        let bytes = lake.get(&layout::lease(step, day())).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Waits (bounded) until `cond` holds; false if it never did.
    fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let end = std::time::Instant::now() + limit;
        while std::time::Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond()
    }

    #[test]
    fn a_cloud_lease_is_renewed_by_its_heartbeat_for_as_long_as_the_run_lasts() {
        let (lake, store) = cloud_lake();
        let ttl = Duration::from_millis(600);
        let lease = Lease::acquire(&lake, "transform", day(), "long", ttl).unwrap();
        let first = stored(&lake, "transform").expires_at_ms;
        // Three lease times: without renewals it would have expired twice over.
        std::thread::sleep(ttl * 3);
        lease.check().unwrap();
        let now = stored(&lake, "transform");
        assert_eq!(now.run_id, "long");
        assert!(
            now.expires_at_ms > first + ttl.as_millis() as i64,
            "{now:?}"
        );
        assert!(now.live_at(now_ms()));
        assert!(store.puts() > 3, "renewed every third of the lease time");
        let e = Lease::acquire(&lake, "transform", day(), "other", ttl).unwrap_err();
        assert!(e.to_string().contains("run long"), "{e}");
        drop(lease);
        assert_eq!(stored(&lake, "transform").expires_at_ms, 0, "released");
        Lease::acquire(&lake, "transform", day(), "other", ttl).unwrap();
    }

    #[test]
    fn a_cloud_lease_that_expired_is_never_revived_and_its_run_publishes_nothing() {
        let (lake, store) = cloud_lake();
        let ttl = Duration::from_millis(600);
        let mut lease = Lease::acquire(&lake, "transform", day(), "stalled", ttl).unwrap();
        // Every renewal fails (the bucket is unreachable) until the lease has expired.
        store.inject(&[Fault::Fail; 64]);
        let expiry = stored(&lake, "transform").expires_at_ms;
        assert!(eventually(ttl * 5, || now_ms() > expiry + 200));
        store.inject(&[]);
        // The heartbeat's next round finds it expired: lost, not renewed.
        let e = eventually(ttl * 3, || lease.check().is_err());
        assert!(e, "an expired lease must not pass the check");
        let msg = lease.check().unwrap_err().to_string();
        assert!(msg.contains("run stalled"), "{msg}");
        assert!(lease.record_read("extract", "e1").is_err());
        let held = stored(&lake, "transform");
        assert_eq!(held.expires_at_ms, expiry, "never written again");
        assert!(held.reads.is_empty(), "its read was not recorded");
        // Another run takes it over; the stalled run's release leaves the new holder alone.
        let next = Lease::acquire(&lake, "transform", day(), "next", ttl).unwrap();
        drop(lease);
        let held = stored(&lake, "transform");
        assert_eq!(held.run_id, "next");
        assert!(held.live_at(now_ms()));
        drop(next);
    }

    #[test]
    fn a_lost_reply_to_a_lease_write_is_recognised_as_the_runs_own_write() {
        let ttl = Duration::from_secs(60);
        for fault in [Fault::LoseReply, Fault::LoseReplyAndRetry] {
            // Taking a free lease.
            let (lake, store) = cloud_lake();
            store.inject(&[fault]);
            let mut lease = Lease::acquire(&lake, "transform", day(), "mine", ttl)
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(stored(&lake, "transform").run_id, "mine");
            // Recording a read (a renewal).
            store.inject(&[fault]);
            lease
                .record_read("extract", "e1")
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            lease.check().unwrap();
            assert_eq!(stored(&lake, "transform").reads["extract"], "e1");
            assert!(Lease::acquire(&lake, "transform", day(), "other", ttl).is_err());
            // Releasing.
            store.inject(&[fault]);
            drop(lease);
            assert_eq!(stored(&lake, "transform").expires_at_ms, 0, "{fault:?}");

            // Taking over a released lease (its create is refused, the takeover's reply lost).
            store.inject(&[Fault::Pass, fault]);
            let lease = Lease::acquire(&lake, "transform", day(), "again", ttl)
                .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(stored(&lake, "transform").run_id, "again");
            drop(lease);
        }
        // A write that failed outright is not mistaken for one that landed.
        let (lake, store) = cloud_lake();
        store.inject(&[Fault::Fail]);
        let e = Lease::acquire(&lake, "transform", day(), "mine", ttl).unwrap_err();
        assert!(e.to_string().contains("connection reset"), "{e}");
        assert!(
            lake.get_opt(&layout::lease("transform", day()))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn of_two_runs_taking_over_an_expired_cloud_lease_one_wins() {
        let (lake, _store) = cloud_lake();
        let ttl = Duration::from_secs(60);
        let dead = Holder {
            step: "transform".into(),
            date: day(),
            run_id: "killed".into(),
            host: "worker-7".into(),
            pid: 4242,
            acquired_at: "2026-11-20T00:00:00.000Z".into(),
            expires_at_ms: now_ms() - 1,
            reads: BTreeMap::from([("extract".to_string(), "e0".to_string())]),
        };
        let path = layout::lease("transform", day());
        lake.put(&path, serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(
            live_reads(&lake, day()).unwrap().is_empty(),
            "expired: reads nothing"
        );
        let runs: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let lake = &lake;
                    s.spawn(move || Lease::acquire(lake, "transform", day(), &format!("r{i}"), ttl))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<_> = runs.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "{runs:?}");
        for r in runs.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(r.exit_code(), 1, "{r}");
        }
        assert_ne!(stored(&lake, "transform").run_id, "killed");
    }
}

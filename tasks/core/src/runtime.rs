//! The process-wide tokio runtime used to drive async backends (object stores, later AWS SDKs)
//! from the synchronous step functions.
//!
//! It is created lazily and re-created after a `fork()`: a runtime built before a fork has no worker
//! threads in the child (Airflow forks its task processes after importing the Python module).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime of the current process.
pub fn runtime() -> Arc<Runtime> {
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, rt)) = guard.as_ref()
        && *owner == pid
    {
        return rt.clone();
    }
    if let Some((_, stale)) = guard.take() {
        // Inherited from the parent across fork(): its threads do not exist here, dropping it
        // would try to join them. Leak it instead.
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bitacora-io")
            .enable_all()
            .build()
            .expect("cannot start the tokio runtime"),
    );
    *guard = Some((pid, rt.clone()));
    rt
}

/// Runs a future to completion on the process runtime. Must not be called from async code.
pub fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

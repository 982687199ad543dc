//! `bitacora-stream`: the real-time half of Bitácora.
//!
//! Records arrive from a [`sources::StreamSource`] (HTTP ingest, the embedded default; Kinesis),
//! are normalised by the batch transform's own code ([`bitacora_model::normalize`]), filtered by a
//! [`dedup::DedupStore`] (Redis, memory, none) and handed to every matching route
//! ([`routes`]), each with its PII policy, its bounded buffer, batching, retries and dead
//! letters, in front of a [`sinks::Sink`]. A batch is acknowledged to its source only once every
//! matching route accepted its records (delivered, or written to the route's dead-letter sink);
//! only then are its dedup keys marked seen ([`pipeline`]). So delivery is at least once, and the
//! dedup window removes the copies a producer or a retry sends again.
//!
//! Delivered events feed the live dashboard's aggregates ([`live`], served at `/`) and the
//! alert rules ([`alerts`]), whose notifications are events delivered to routes of their own.
//!
//! One folder per component (Vector's layout): its configuration type, the component, its tests.

pub mod alerts;
pub mod config;
pub mod dashboard;
pub mod dedup;
pub mod error;
pub mod live;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod routes;
pub mod server;
pub mod service;
pub mod sinks;
pub mod sources;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;

pub use config::StreamConfig;
pub use error::{Error, Result};

//! Bitácora core: everything the pipeline steps share.
//!
//! * [`config`]: the TOML configuration contract with environment overrides.
//! * [`error`]: the error type every library crate returns, and its exit-code mapping.
//! * The record model and the one normalisation live in `bitacora-model` (no I/O), which the
//!   batch transform, the stream service and the Lambda handlers share.
//! * [`schema`]: the curated tables (`events`, `quarantine`) as Arrow schemas and Hive/Glue types.
//! * [`lake`]: the object-store backed data lake and its layout; [`manifest`]: atomic publication.
//! * [`crypto`]: client-side envelope encryption of raw objects (AES-256-GCM, chunked).
//! * [`source`] and [`catalog`]: backend traits, implemented by the step crates.
//! * [`cli`]: the command-line contract shared by every binary (one JSON report, exit codes 0/1/2).

#[cfg(feature = "aws")]
pub mod aws;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod date;
pub mod error;
pub mod hash;
#[cfg(feature = "aws")]
pub mod kms;
pub mod lake;
pub mod lease;
pub mod lines;
pub mod manifest;
pub mod parallel;
pub mod process;
pub mod progress;
pub mod query;
pub mod raw;
pub mod runtime;
pub mod schema;
pub mod source;

pub use config::Config;
pub use date::Day;
pub use error::{Error, Result};
pub use process::Allocator;

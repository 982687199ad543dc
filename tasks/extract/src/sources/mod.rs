//! Log-source backends. Each lives in its own module behind [`bitacora_core::source::LogSource`].

#[cfg(feature = "aws")]
pub mod cloudwatch;
pub mod files;

//! Log-source backends. Each lives in its own module behind [`bitacora_core::source::LogSource`].

pub mod files;

//! Query-engine backends behind [`bitacora_core::query::QueryEngine`].

pub mod datafusion;

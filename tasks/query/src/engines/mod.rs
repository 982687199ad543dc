//! Query-engine backends behind [`bitacora_core::query::QueryEngine`].

#[cfg(feature = "aws")]
pub mod athena;
pub mod catalog_table;
pub mod datafusion;

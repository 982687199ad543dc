//! Catalog backends behind [`bitacora_core::catalog::Catalog`].

#[cfg(feature = "aws")]
pub mod glue;
pub mod local;

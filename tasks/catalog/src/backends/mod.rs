//! Catalog backends behind [`bitacora_core::catalog::Catalog`].

pub mod local;

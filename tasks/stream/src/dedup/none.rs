//! `kind = "none"`: every record is new (the routes see every copy).

use async_trait::async_trait;

use super::{Claim, DedupStore, Key};
use crate::Result;

pub struct NoDedup;

#[async_trait]
impl DedupStore for NoDedup {
    fn kind(&self) -> &'static str {
        "none"
    }
    async fn claim(&self, _owner: &str, keys: &[Key<'_>]) -> Result<Vec<Claim>> {
        Ok(vec![Claim::New; keys.len()])
    }
    async fn commit(&self, _owner: &str, _keys: &[Key<'_>]) -> Result<()> {
        Ok(())
    }
    async fn release(&self, _owner: &str, _keys: &[Key<'_>]) -> Result<()> {
        Ok(())
    }
    async fn extend(&self, _owner: &str, _keys: &[Key<'_>]) -> Result<()> {
        Ok(())
    }
}

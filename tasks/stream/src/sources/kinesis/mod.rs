//! `kind = "kinesis"`: every shard of `stream_name`, shared by the instances reading it.
//!
//! A coordinator (every third of `lease_secs`) heartbeats this instance, lists the shards
//! (every `shard_sync_secs`, and at once when a shard ends), and takes its share of the shards
//! that may be read: not finished, and — the KCL's rule on resharding — every parent finished
//! (checkpointed at [`leases::SHARD_END`]), so a child's records never overtake its parents'.
//! It renews its leases, gives up shards above its share (`ceil(shards / instances)`) and lets a
//! reader go when its lease was lost. Each held shard has one reader: GetRecords from its
//! checkpoint (at most 5 calls/s and 2 MiB/s per shard; backs off on
//! `ProvisionedThroughputExceededException`; a new iterator from the checkpoint after
//! `ExpiredIteratorException`), each batch through [`Pipeline::process`] until every route
//! accepted it, and only then the checkpoint, written only while this instance holds the lease.
//! A shard's end (no next iterator) is checkpointed as [`leases::SHARD_END`].
//!
//! Records are detected one by one ([`records`]): CloudWatch Logs subscription payloads, app
//! messages, CloudWatch envelopes.

pub mod leases;
pub mod records;

#[cfg(feature = "aws")]
mod reader;

#[cfg(feature = "aws")]
pub use reader::KinesisSource;

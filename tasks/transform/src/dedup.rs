//! The dedup rule and the output order of one bucket.
//!
//! Copies of an event share its `event_id` (the app's, else CloudWatch's); the kept copy is the one
//! with the smallest `(timestamp, eventId)` of its delivery. Kept rows are ordered by
//! `(event_type, event_time, event_id)` — a total order, so the output does not depend on how the
//! input was split between threads — which lets row-group statistics prune filters on time and type.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use arrow::array::{Array, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::Int64Type;
use bitacora_core::{Error, Result};

use crate::batch::{SRC_ID, SRC_TS};

/// (batch, row) of a kept row.
pub type RowRef = (usize, usize);

/// A bucket's maps: one XXH3 call per key, seed 0.
type Keys = bitacora_core::hash::Seeded;

struct Cols<'a> {
    id: &'a StringArray,
    event_type: &'a StringArray,
    time: &'a TimestampMicrosecondArray,
    src_ts: &'a arrow::array::PrimitiveArray<Int64Type>,
    src_id: &'a StringArray,
}

fn cols(b: &RecordBatch) -> Result<Cols<'_>> {
    let col = |name: &str| {
        b.column_by_name(name)
            .ok_or_else(|| Error::Invariant(format!("column {name} missing in a work batch")))
    };
    Ok(Cols {
        id: col("event_id")?.as_string::<i32>(),
        event_type: col("event_type")?.as_string::<i32>(),
        time: col("event_time")?.as_primitive(),
        src_ts: col(SRC_TS)?.as_primitive::<Int64Type>(),
        src_id: col(SRC_ID)?.as_string::<i32>(),
    })
}

/// Returns the kept rows of `batches`, in output order.
pub fn dedup_and_order(batches: &[RecordBatch]) -> Result<Vec<RowRef>> {
    let cols: Vec<Cols<'_>> = batches.iter().map(cols).collect::<Result<_>>()?;
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut best: HashMap<&str, RowRef, Keys> =
        HashMap::with_capacity_and_hasher(total, Keys::default());
    for (bi, c) in cols.iter().enumerate() {
        for ri in 0..c.id.len() {
            match best.entry(c.id.value(ri)) {
                Entry::Vacant(v) => {
                    v.insert((bi, ri));
                }
                Entry::Occupied(mut o) => {
                    let (bj, rj) = *o.get();
                    let mine = (c.src_ts.value(ri), c.src_id.value(ri));
                    let theirs = (cols[bj].src_ts.value(rj), cols[bj].src_id.value(rj));
                    if mine < theirs {
                        o.insert((bi, ri));
                    }
                }
            }
        }
    }
    // Mark the kept rows, then read their sort keys in storage order: columns are scanned
    // sequentially instead of probed in the map's random order (a cache miss per row and column).
    let mut kept: Vec<Vec<bool>> = cols.iter().map(|c| vec![false; c.id.len()]).collect();
    let rows = best.len();
    for (bi, ri) in best.into_values() {
        kept[bi][ri] = true;
    }
    // Order by (event_type, event_time, event_id). Types are usually few: number them as they
    // come (the last one seen is compared first, a map numbers the others), then turn those
    // numbers into ranks of the sorted types (a null type first); ids are compared only on equal
    // type and time.
    let mut types: Vec<Option<&str>> = Vec::new();
    let mut type_ids: HashMap<Option<&str>, usize, Keys> = HashMap::with_hasher(Keys::default());
    let mut last = 0usize;
    // One integer key per row, (type, time) packed so that integer order is theirs (the time's
    // sign bit flipped); the type's number is replaced by its rank once all types are known.
    let mut keyed: Vec<(u128, RowRef)> = Vec::with_capacity(rows);
    for (bi, c) in cols.iter().enumerate() {
        for (ri, _) in kept[bi].iter().enumerate().filter(|(_, k)| **k) {
            let t = (!c.event_type.is_null(ri)).then(|| c.event_type.value(ri));
            if types.get(last) != Some(&t) {
                last = *type_ids.entry(t).or_insert_with(|| {
                    types.push(t);
                    types.len() - 1
                });
            }
            let time = (c.time.value(ri) as u64) ^ (1 << 63);
            keyed.push(((last as u128) << 64 | u128::from(time), (bi, ri)));
        }
    }
    let mut by_name: Vec<usize> = (0..types.len()).collect();
    by_name.sort_by_key(|&i| types[i]);
    let mut rank = vec![0u128; types.len()];
    for (r, &i) in by_name.iter().enumerate() {
        rank[i] = r as u128;
    }
    for k in &mut keyed {
        k.0 = rank[(k.0 >> 64) as usize] << 64 | (k.0 & u128::from(u64::MAX));
    }
    keyed.sort_unstable_by_key(|k| k.0);
    let id = |(b, r): RowRef| cols[b].id.value(r);
    for run in keyed.chunk_by_mut(|a, b| a.0 == b.0) {
        if run.len() > 1 {
            run.sort_unstable_by(|a, b| id(a.1).cmp(id(b.1)));
        }
    }
    let keep: Vec<RowRef> = keyed.into_iter().map(|k| k.1).collect();
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::EventBuilder;
    use bitacora_model::model::Event;
    use std::borrow::Cow;

    fn ev(
        id: &'static str,
        ty: &'static str,
        time: i64,
        src_ts: i64,
        src_id: &'static str,
    ) -> Event<'static> {
        Event {
            event_id: Cow::Borrowed(id),
            event_type: Some(Cow::Borrowed(ty)),
            event_time: time,
            source_timestamp: src_ts,
            source_event_id: Cow::Borrowed(src_id),
            ..Event::default()
        }
    }

    #[test]
    fn keeps_earliest_delivery_and_orders_rows() {
        let mut b1 = EventBuilder::new(4);
        b1.append(&ev("a", "tap", 10, 500, "9"));
        b1.append(&ev("b", "api_call", 20, 100, "1"));
        let mut b2 = EventBuilder::new(4);
        b2.append(&ev("a", "tap", 10, 400, "8"));
        b2.append(&ev("a", "tap", 10, 400, "7"));
        b2.append(&ev("c", "tap", 5, 50, "2"));
        let batches = vec![b1.finish().unwrap(), b2.finish().unwrap()];
        let keep = dedup_and_order(&batches).unwrap();
        // b (api_call) first, then c (tap, t=5), then a (tap, t=10) from its (400, "7") delivery.
        assert_eq!(keep, vec![(0, 1), (1, 2), (1, 1)]);
    }

    #[test]
    fn orders_null_types_first_then_time_with_negatives_then_id() {
        let mut b = EventBuilder::new(8);
        b.append(&ev("z", "tap", 7, 1, "1"));
        b.append(&ev("y", "tap", -3, 1, "2"));
        b.append(&Event {
            event_type: None,
            ..ev("n", "", 100, 1, "3")
        });
        b.append(&ev("b", "tap", 7, 1, "4"));
        b.append(&ev("a", "api_call", i64::MAX, 1, "5"));
        b.append(&ev("c", "tap", i64::MIN, 1, "6"));
        let keep = dedup_and_order(&[b.finish().unwrap()]).unwrap();
        let rows: Vec<usize> = keep.iter().map(|k| k.1).collect();
        // null type; api_call; tap by time (MIN, -3, 7, 7), the two at 7 by id (b before z).
        assert_eq!(rows, vec![2, 4, 5, 1, 3, 0]);
    }
}

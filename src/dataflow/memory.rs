//! What each table's and each view's arrangements hold, from differential's
//! `differential/arrange` log: every spine reports the batches it gains
//! (records in), the merges it completes (records compacted away) and the
//! batches it drops, and every batcher the updates it buffers.
//!
//! Operators are told apart by dataflow: the operator identifiers a worker
//! hands out while it builds a dataflow form one range, recorded with the
//! dataflow's owner (a table or a view). Each worker folds its events into
//! one shared total per owner, which `/metrics` and `GET /views` read.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use differential_dataflow::logging::{DifferentialEvent, DifferentialEventBuilder};
use serde::Serialize;

/// Whose arrangements: a base table (or a view's parameter table), or a view.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Owner {
    Table(usize),
    View(usize),
}

/// What an owner's arrangements hold, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Updates held in arrangement batches: a row at a time, with its count.
    pub records: i64,
    /// Batches those records are in (merging brings them down).
    pub batches: i64,
    /// Updates received but not yet formed into batches.
    pub buffered_records: i64,
    /// Bytes allocated for those buffered updates.
    pub buffered_bytes: i64,
}

impl Usage {
    fn add(&mut self, d: &Usage) {
        self.records += d.records;
        self.batches += d.batches;
        self.buffered_records += d.buffered_records;
        self.buffered_bytes += d.buffered_bytes;
    }

    fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// The totals of one running dataflow (all its workers).
#[derive(Default)]
pub struct Sizes {
    usage: Mutex<HashMap<Owner, Usage>>,
}

impl Sizes {
    pub fn of(&self, owner: Owner) -> Usage {
        self.lock().get(&owner).copied().unwrap_or_default()
    }

    /// Every table's arrangements together (views share them).
    pub fn tables(&self) -> Usage {
        let mut total = Usage::default();
        for (o, u) in self.lock().iter() {
            if matches!(o, Owner::Table(_)) {
                total.add(u);
            }
        }
        total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Owner, Usage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, deltas: HashMap<Owner, Usage>) {
        let mut usage = self.lock();
        for (owner, d) in deltas {
            let u = usage.entry(owner).or_default();
            u.add(&d);
            if u.is_zero() {
                usage.remove(&owner);
            }
        }
    }
}

/// One worker's record of which operator identifiers belong to whom.
#[derive(Clone, Default)]
pub struct Owners {
    /// First identifier of a dataflow → (one past its last, its owner).
    ranges: Rc<RefCell<BTreeMap<usize, (usize, Owner)>>>,
}

impl Owners {
    /// The operators with identifiers in `first..end` belong to `owner`.
    pub fn record(&self, first: usize, end: usize, owner: Owner) {
        if end > first {
            self.ranges.borrow_mut().insert(first, (end, owner));
        }
    }

    fn owner_of(&self, operator: usize) -> Option<Owner> {
        let ranges = self.ranges.borrow();
        let (_, &(end, owner)) = ranges.range(..=operator).next_back()?;
        (operator < end).then_some(owner)
    }
}

/// Registers this worker's logger of arrangement sizes into `sizes`. It must
/// be called before any dataflow is built: a spine finds its logger when it
/// is created.
pub fn log_into(worker: &mut timely::worker::Worker, sizes: Arc<Sizes>, owners: Owners) {
    let Some(mut register) = worker.log_register() else {
        return;
    };
    register.insert::<DifferentialEventBuilder, _>(
        "differential/arrange",
        move |_time, events: &mut Option<Vec<(std::time::Duration, DifferentialEvent)>>| {
            let Some(events) = events.as_ref() else {
                return;
            };
            let mut deltas: HashMap<Owner, Usage> = HashMap::new();
            for (_, event) in events {
                let (operator, d) = match event {
                    DifferentialEvent::Batch(e) => (
                        e.operator,
                        Usage {
                            records: e.length as i64,
                            batches: 1,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::Merge(e) => match e.complete {
                        Some(merged) => (
                            e.operator,
                            Usage {
                                records: merged as i64 - e.length1 as i64 - e.length2 as i64,
                                batches: -1,
                                ..Usage::default()
                            },
                        ),
                        None => continue,
                    },
                    DifferentialEvent::Drop(e) => (
                        e.operator,
                        Usage {
                            records: -(e.length as i64),
                            batches: -1,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::Batcher(e) => (
                        e.operator,
                        Usage {
                            buffered_records: e.records_diff as i64,
                            buffered_bytes: e.capacity_diff as i64,
                            ..Usage::default()
                        },
                    ),
                    DifferentialEvent::MergeShortfall(_) | DifferentialEvent::TraceShare(_) => {
                        continue
                    }
                };
                if let Some(owner) = owners.owner_of(operator) {
                    deltas.entry(owner).or_default().add(&d);
                }
            }
            if !deltas.is_empty() {
                sizes.apply(deltas);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_belong_to_the_dataflow_built_around_them() {
        let owners = Owners::default();
        owners.record(0, 5, Owner::Table(1));
        owners.record(5, 9, Owner::View(3));
        owners.record(12, 12, Owner::View(4));
        assert_eq!(owners.owner_of(0), Some(Owner::Table(1)));
        assert_eq!(owners.owner_of(4), Some(Owner::Table(1)));
        assert_eq!(owners.owner_of(5), Some(Owner::View(3)));
        assert_eq!(owners.owner_of(9), None);
        assert_eq!(owners.owner_of(12), None);
    }

    #[test]
    fn deltas_sum_and_empty_owners_go() {
        let sizes = Sizes::default();
        let d = |records, batches| Usage {
            records,
            batches,
            ..Usage::default()
        };
        sizes.apply(HashMap::from([
            (Owner::View(1), d(10, 1)),
            (Owner::Table(2), d(4, 1)),
        ]));
        sizes.apply(HashMap::from([
            (Owner::View(1), d(-3, -1)),
            (Owner::Table(7), d(1, 1)),
        ]));
        assert_eq!(sizes.of(Owner::View(1)), d(7, 0));
        assert_eq!(sizes.tables(), d(5, 2));
        sizes.apply(HashMap::from([(Owner::View(1), d(-7, 0))]));
        assert!(sizes.lock().get(&Owner::View(1)).is_none());
    }
}

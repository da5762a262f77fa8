//! How the boundary cost depends on the shape of an event: the same
//! fraction-sampler (whose own work is a hash of the id) fed events with
//! more or fewer strings. Its per-event cost is almost all crossing: host
//! lowering into guest memory, the guest's allocations, and freeing them.

use std::hint::black_box;
use std::sync::Arc;

use halyard::plugin::{AttrValue, Attribute, Event, Plugin};

use crate::timing::{Budget, ns_per_event};

/// Batch size of the shape measurements.
const BATCH: usize = 1000;

/// The bench events changed by `edit`.
fn reshaped(events: &[Event], edit: impl Fn(&mut Event)) -> Vec<Event> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            edit(&mut e);
            e
        })
        .collect()
}

/// Adds four attributes `a`..`d` with `value`.
fn add_four(e: &mut Event, value: &AttrValue) {
    for key in ["a", "b", "c", "d"] {
        e.attributes.push(Attribute {
            key: key.to_owned(),
            value: value.clone(),
        });
    }
}

/// Prints the sandboxed per-event cost of `sampler` for each shape.
pub fn print_shapes(sampler: &Arc<Plugin>, events: &[Event], budget: Budget) {
    let str_attr = AttrValue::Str("xyz".to_owned());
    let int_attr = AttrValue::Int(7);
    let shapes: [(&str, Vec<Event>); 5] = [
        (
            "no attributes, empty source and kind",
            reshaped(events, |e| {
                e.attributes.clear();
                e.source.clear();
                e.kind.clear();
            }),
        ),
        ("no attributes", reshaped(events, |e| e.attributes.clear())),
        ("the bench event (1 string attribute)", events.to_vec()),
        (
            "+4 int attributes",
            reshaped(events, |e| add_four(e, &int_attr)),
        ),
        (
            "+4 string attributes",
            reshaped(events, |e| add_four(e, &str_attr)),
        ),
    ];
    println!(
        "## Boundary cost by event shape ({}, batch {BATCH})\n",
        sampler.info.name
    );
    println!("| event shape | sandbox ns/event |");
    println!("|---|--:|");
    let mut inst = sampler.instance();
    for (name, shaped) in &shapes {
        let ns = ns_per_event(shaped, BATCH, budget, |b| {
            black_box(inst.sample(black_box(b)).expect("sample"));
        });
        println!("| {name} | {ns:.0} |");
    }
    println!();
}

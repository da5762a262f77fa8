//! The store limiter: one memory budget for everything a guest can make the
//! host allocate on its behalf — every linear memory and every table of the
//! instance together — plus caps on how many instances, memories and tables
//! one store may create.
//!
//! Invariant: the bytes of all memories plus all table elements of one
//! plugin instance never exceed `Limits::memory_bytes`. A per-memory cap
//! alone would let a component with eight memories take eight times the
//! cap, and `table.grow` (which allocates on the host) would be unlimited.

use wasmtime::ResourceLimiter;

use super::limits::Limits;

/// What the host counts per table element. Wasmtime stores a funcref as a
/// pointer (8 bytes on 64-bit hosts); lazily initialised tables keep a
/// little more, so this rounds up.
pub const TABLE_ELEMENT_BYTES: usize = 16;

/// Why a grow was refused; the trap's root cause, so the call error can say
/// "memory" whatever wasmtime wraps it in.
#[derive(Debug, thiserror::Error)]
#[error(
    "guest memory cap reached: growing a {what} by {adding} bytes would take the instance to {total} of its {cap} bytes"
)]
pub struct OverBudget {
    /// `memory` or `table`.
    pub what: &'static str,
    /// What the grow asked for.
    pub adding: usize,
    /// The total it would reach.
    pub total: usize,
    /// The budget.
    pub cap: usize,
}

/// Tracks the store's total and refuses grows past the budget (by trapping,
/// so the reason reaches the call error).
#[derive(Debug)]
pub struct GuestLimiter {
    /// Bytes of memories and table elements so far.
    used: usize,
    /// The budget for all of them together.
    cap: usize,
    /// The most instances (core and component) one store may create.
    instances: usize,
    /// The most linear memories.
    memories: usize,
    /// The most tables.
    tables: usize,
}

impl GuestLimiter {
    /// A limiter with the budget and counts of `limits`.
    pub fn new(limits: &Limits) -> Self {
        GuestLimiter {
            used: 0,
            cap: limits.memory_bytes,
            instances: limits.max_instances,
            memories: limits.max_memories,
            tables: limits.max_tables,
        }
    }

    /// Bytes in use (memories plus tables).
    pub fn used(&self) -> usize {
        self.used
    }

    fn grow(&mut self, what: &'static str, adding: usize) -> wasmtime::Result<bool> {
        let total = self.used.saturating_add(adding);
        if total > self.cap {
            return Err(wasmtime::Error::new(OverBudget {
                what,
                adding,
                total,
                cap: self.cap,
            }));
        }
        self.used = total;
        Ok(true)
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow("memory", desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let adding = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow("table", adding)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let limits = Limits {
            memory_bytes: 1 << 20,
            ..Limits::default()
        };
        let mut limiter = GuestLimiter::new(&limits);
        assert!(limiter.memory_growing(0, 512 << 10, None).unwrap());
        // A second memory counts against the same budget.
        assert!(limiter.memory_growing(0, 256 << 10, None).unwrap());
        // 16 Ki table elements are 256 KiB: exactly the rest.
        assert!(limiter.table_growing(0, 16 << 10, None).unwrap());
        assert_eq!(limiter.used(), 1 << 20);
        let err = limiter.table_growing(16 << 10, (16 << 10) + 1, None);
        assert!(err.unwrap_err().downcast_ref::<OverBudget>().is_some());
        assert!(limiter.memory_growing(0, 1, None).is_err());
        // A grow past the declared maximum fails without trapping.
        assert!(!limiter.memory_growing(0, 10, Some(5)).unwrap());
    }
}

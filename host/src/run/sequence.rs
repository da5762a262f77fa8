//! Commit order for one input across several pipeline workers.
//!
//! An input that keeps a read position (the file input's offset) sends
//! several batches at once so every worker has work; each batch carries a
//! [`Ticket`] taken when it is sent. Workers decode and run the stages of
//! those batches in parallel, but a batch commits only once every earlier
//! ticket of its input has finished ([`Ticket::wait_turn`]), so the
//! committed position never runs ahead of a batch not yet committed, and
//! the input's events enter the buffer in read order.
//!
//! Invariants:
//! - tickets finish in any order, but commit in ticket order;
//! - when a ticket fails (not committed: buffer full, shutting down, an
//!   error), every ticket issued before that moment and after it is
//!   refused at its turn ([`PipelineError::EarlierBatchRefused`]): its
//!   position is past the failed batch's lines, so committing it would
//!   skip them after a crash. The input sends them all again, in order;
//! - a ticket dropped unfinished (its request was never served) fails, so
//!   no later ticket waits for it forever.
//!
//! Deadlock freedom: workers take requests from one queue in send order, so
//! the ticket a worker waits for was taken earlier by a worker that is
//! running it (or has finished it), and never waits for a later one.

use std::collections::BTreeSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::pipeline::PipelineError;

/// The commit order of one input's batches.
#[derive(Debug, Default)]
pub struct Sequence {
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The next ticket number to hand out.
    issued: u64,
    /// The ticket whose turn it is (every ticket below it has finished).
    next: u64,
    /// Tickets at or past `next` that finished out of order.
    finished: BTreeSet<u64>,
    /// Tickets refused because an earlier one failed.
    refused: BTreeSet<u64>,
}

impl Sequence {
    /// A sequence with no tickets yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Sequence::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ticket for the batch about to be sent (take them in send order).
    pub fn ticket(self: &Arc<Self>) -> Ticket {
        let mut state = self.lock();
        let n = state.issued;
        state.issued += 1;
        Ticket {
            sequence: self.clone(),
            n,
            finished: false,
        }
    }

    fn finish(&self, n: u64, committed: bool) {
        let mut state = self.lock();
        if !committed {
            // Every batch sent after this one carries a position past it.
            let later: Vec<u64> = (n + 1..state.issued)
                .filter(|t| !state.finished.contains(t))
                .collect();
            state.refused.extend(later);
        }
        state.refused.remove(&n);
        state.finished.insert(n);
        loop {
            let next = state.next;
            if !state.finished.remove(&next) {
                break;
            }
            state.next += 1;
        }
        drop(state);
        self.turn.notify_all();
    }
}

/// One batch's place in its input's commit order. Finish it with
/// [`Ticket::finish`]; dropping it unfinished counts as a failure.
#[derive(Debug)]
pub struct Ticket {
    sequence: Arc<Sequence>,
    n: u64,
    finished: bool,
}

impl Ticket {
    /// Whether an earlier batch already failed, so this one will be
    /// refused at its turn (a worker skips its stages then).
    pub fn refused(&self) -> bool {
        self.sequence.lock().refused.contains(&self.n)
    }

    /// Waits until every earlier ticket has finished; `Err` if one of them
    /// failed, so this batch must not be committed.
    pub fn wait_turn(&self) -> Result<(), PipelineError> {
        let mut state = self.sequence.lock();
        while state.next < self.n {
            state = self
                .sequence
                .turn
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.refused.contains(&self.n) {
            return Err(PipelineError::EarlierBatchRefused);
        }
        Ok(())
    }

    /// Marks the batch done: `committed` true if its commit succeeded.
    pub fn finish(mut self, committed: bool) {
        self.finished = true;
        self.sequence.finish(self.n, committed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.finished {
            self.sequence.finish(self.n, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_ticket_commits_only_after_the_earlier_one() {
        let seq = Sequence::new();
        let first = seq.ticket();
        let second = seq.ticket();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let turn = second.wait_turn();
            tx.send(turn.is_ok()).unwrap();
            second.finish(true);
        });
        assert!(
            rx.try_recv().is_err(),
            "the second waits while the first runs"
        );
        first.wait_turn().unwrap();
        first.finish(true);
        assert!(rx.recv().unwrap(), "then it commits");
        waiter.join().unwrap();
        let third = seq.ticket();
        third.wait_turn().unwrap();
        third.finish(true);
    }

    #[test]
    fn a_failed_ticket_refuses_every_ticket_sent_after_it_but_not_later_retries() {
        let seq = Sequence::new();
        let a = seq.ticket();
        let b = seq.ticket();
        let c = seq.ticket();
        assert!(!b.refused());
        a.finish(false);
        assert!(b.refused() && c.refused());
        assert!(matches!(
            b.wait_turn(),
            Err(PipelineError::EarlierBatchRefused)
        ));
        drop(b);
        assert!(matches!(
            c.wait_turn(),
            Err(PipelineError::EarlierBatchRefused)
        ));
        c.finish(false);
        let retry = seq.ticket();
        assert!(!retry.refused());
        retry.wait_turn().unwrap();
        retry.finish(true);
    }
}

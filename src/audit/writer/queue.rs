//! The writer's job queue: bounded like `std::sync::mpsc::sync_channel`, but holding only
//! what is queued. `sync_channel(n)` allocates and initialises its `n` slots when it is
//! created: at the writer's bound (8 192 jobs of about 400 bytes) that was 3.2 MiB of
//! resident memory from start-up on, a third of the idle gateway's RSS, for a queue that
//! is almost always short. The unbounded channel allocates blocks of a few dozen jobs as
//! they arrive and frees them once read, and a count of queued jobs keeps the bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvError, RecvTimeoutError, TryRecvError};
use std::time::Duration;

/// A queue of at most `bound` items, and the receiving end.
pub(super) fn bounded<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let (sender, receiver) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Sender {
            sender,
            queued: Arc::clone(&queued),
            bound,
        },
        Receiver { receiver, queued },
    )
}

/// The sending end: refuses an item when `bound` are queued or the receiver is gone.
pub(super) struct Sender<T> {
    /// The channel itself.
    sender: mpsc::Sender<T>,
    /// Items sent and not yet received, shared with the [`Receiver`].
    queued: Arc<AtomicUsize>,
    /// Most items queued at once.
    bound: usize,
}

impl<T> Sender<T> {
    /// Queues `item`, or gives it back when the queue is full or the receiver is gone.
    pub(super) fn try_send(&self, item: T) -> Result<(), T> {
        // Counted before it is sent, so the receiver never counts below zero; taken back
        // when it is not sent after all.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.bound {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(item);
        }
        self.sender.send(item).map_err(|error| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            error.0
        })
    }
}

/// The receiving end (the writer thread's).
pub(super) struct Receiver<T> {
    /// The channel itself.
    receiver: mpsc::Receiver<T>,
    /// Items sent and not yet received, shared with the [`Sender`].
    queued: Arc<AtomicUsize>,
}

impl<T> Receiver<T> {
    /// Waits for the next item; an error once every sender is gone and the queue is empty.
    pub(super) fn recv(&self) -> Result<T, RecvError> {
        self.receiver.recv().inspect(|_| self.taken())
    }

    /// Waits at most `timeout` for the next item.
    pub(super) fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.receiver
            .recv_timeout(timeout)
            .inspect(|_| self.taken())
    }

    /// The next item if one is queued.
    pub(super) fn try_recv(&self) -> Result<T, TryRecvError> {
        self.receiver.try_recv().inspect(|_| self.taken())
    }

    /// One item left the queue: room for another.
    fn taken(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_bound_and_takes_again_once_an_item_is_read() {
        let (sender, receiver) = bounded(2);
        assert!(sender.try_send(1).is_ok());
        assert!(sender.try_send(2).is_ok());
        assert_eq!(sender.try_send(3), Err(3), "the bound is 2");
        assert_eq!(receiver.try_recv(), Ok(1));
        assert!(sender.try_send(4).is_ok(), "one read makes room for one");
        assert_eq!(sender.try_send(5), Err(5));
        assert_eq!(receiver.recv(), Ok(2));
        assert_eq!(
            receiver.recv_timeout(Duration::from_millis(1)),
            Ok(4),
            "order is kept"
        );
        assert_eq!(receiver.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn a_gone_receiver_refuses_and_a_gone_sender_ends_the_receiver() {
        let (sender, receiver) = bounded(4);
        drop(receiver);
        assert_eq!(sender.try_send(1), Err(1));
        let (sender, receiver) = bounded(4);
        assert!(sender.try_send(7).is_ok());
        drop(sender);
        assert_eq!(receiver.recv(), Ok(7), "what was queued is still read");
        assert_eq!(receiver.recv(), Err(RecvError));
    }

    #[test]
    fn a_refused_send_to_a_gone_receiver_gives_its_slot_back() {
        let (sender, receiver) = bounded(1);
        drop(receiver);
        assert_eq!(sender.try_send(1), Err(1));
        assert_eq!(sender.queued.load(Ordering::Acquire), 0);
    }
}

//! Sharing one network query among the lookups on a shard that need the same answer at once.
//!
//! When a popular name expires, every connection to it would otherwise send its own query in the
//! same millisecond. The first caller for a key becomes the leader and does the work; later ones
//! wait for its result. A leader that is dropped before finishing (its connection went away)
//! releases the followers, who then retry and one of them takes over, so no one waits on a query
//! nobody is making. Single-threaded by design: it lives inside one shard's resolver.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Queries under way, by key.
pub(crate) struct Inflight<K, V> {
    slots: RefCell<HashMap<K, Rc<Slot<V>>>>,
}

struct Slot<V> {
    state: RefCell<State<V>>,
}

enum State<V> {
    Pending(Vec<Waker>),
    Done(V),
    Abandoned,
}

/// The caller's part in a query.
pub(crate) enum Join<'a, K: Hash + Eq, V> {
    /// Make the query, then hand the result to [`Leader::finish`].
    Leader(Leader<'a, K, V>),
    /// Await the leader's result; `None` means it gave up and the caller should join again.
    Follower(Follower<V>),
}

pub(crate) struct Leader<'a, K: Hash + Eq, V> {
    owner: &'a Inflight<K, V>,
    key: K,
    slot: Rc<Slot<V>>,
    finished: bool,
}

pub(crate) struct Follower<V> {
    slot: Rc<Slot<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Inflight<K, V> {
    pub(crate) fn new() -> Self {
        Inflight {
            slots: RefCell::new(HashMap::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub(crate) fn join(&self, key: K) -> Join<'_, K, V> {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get(&key) {
            return Join::Follower(Follower { slot: slot.clone() });
        }
        let slot = Rc::new(Slot {
            state: RefCell::new(State::Pending(Vec::new())),
        });
        slots.insert(key.clone(), slot.clone());
        Join::Leader(Leader {
            owner: self,
            key,
            slot,
            finished: false,
        })
    }
}

impl<K: Hash + Eq, V> Leader<'_, K, V> {
    /// Publishes the result to every follower and frees the key for the next query.
    pub(crate) fn finish(mut self, value: V) {
        self.finished = true;
        self.settle(State::Done(value));
    }

    fn settle(&self, outcome: State<V>) {
        self.owner.slots.borrow_mut().remove(&self.key);
        let previous = std::mem::replace(&mut *self.slot.state.borrow_mut(), outcome);
        if let State::Pending(wakers) = previous {
            wakers.into_iter().for_each(Waker::wake);
        }
    }
}

impl<K: Hash + Eq, V> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        if !self.finished {
            self.settle(State::Abandoned);
        }
    }
}

impl<V: Clone> Future for Follower<V> {
    type Output = Option<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<V>> {
        let mut state = self.slot.state.borrow_mut();
        match &mut *state {
            State::Done(value) => Poll::Ready(Some(value.clone())),
            State::Abandoned => Poll::Ready(None),
            State::Pending(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

impl<K, V> fmt::Debug for Inflight<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflight")
            .field("queries", &self.slots.borrow().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn followers_get_the_leaders_result() {
        let inflight: Inflight<&str, u32> = Inflight::new();
        let Join::Leader(leader) = inflight.join("a") else {
            panic!("first caller leads");
        };
        let Join::Follower(mut f1) = inflight.join("a") else {
            panic!("second caller follows");
        };
        let Join::Follower(mut f2) = inflight.join("a") else {
            panic!("third caller follows");
        };
        assert!(matches!(inflight.join("b"), Join::Leader(_)));
        assert_eq!(future::block_on(future::poll_once(&mut f1)), None);
        leader.finish(7);
        assert_eq!(inflight.len(), 0);
        assert_eq!(future::block_on(&mut f1), Some(7));
        assert_eq!(future::block_on(&mut f2), Some(7));
        assert!(
            matches!(inflight.join("a"), Join::Leader(_)),
            "key is free again"
        );
    }

    #[test]
    fn dropped_leader_releases_followers() {
        let inflight: Inflight<&str, u32> = Inflight::new();
        let leader = inflight.join("a");
        let Join::Follower(follower) = inflight.join("a") else {
            panic!("second caller follows");
        };
        drop(leader);
        assert_eq!(future::block_on(follower), None);
        assert!(matches!(inflight.join("a"), Join::Leader(_)));
    }
}

//! The peers this node will not talk to: node IDs and addresses that sent data failing
//! verification (wire.md section 7). Bounded: each set keeps the [`MAX_BANNED`] most recent,
//! so a stream of throwaway identities each sending one bad chunk cannot grow the node's
//! memory without end; forgetting the oldest costs at most one more bad chunk from it.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;

use crate::id::Id;

/// How many node IDs, and how many addresses, are remembered.
pub const MAX_BANNED: usize = 65_536;

/// A set that forgets its oldest members beyond a bound.
#[derive(Debug)]
pub(super) struct Recent<T> {
    set: HashSet<T>,
    order: VecDeque<T>,
    max: usize,
}

impl<T: Copy + Eq + Hash> Recent<T> {
    pub(super) fn new(max: usize) -> Self {
        Recent {
            set: HashSet::new(),
            order: VecDeque::new(),
            max,
        }
    }

    pub(super) fn insert(&mut self, v: T) {
        if !self.set.insert(v) {
            return;
        }
        self.order.push_back(v);
        while self.order.len() > self.max {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    pub(super) fn contains(&self, v: &T) -> bool {
        self.set.contains(v)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> {
        self.order.iter()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

/// Banned node IDs and addresses.
#[derive(Debug)]
pub(super) struct Bans {
    pub(super) nodes: Recent<Id>,
    pub(super) addrs: Recent<SocketAddr>,
}

impl Bans {
    pub(super) fn new() -> Self {
        Bans {
            nodes: Recent::new(MAX_BANNED),
            addrs: Recent::new(MAX_BANNED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_are_forgotten_beyond_the_bound() {
        let mut r = Recent::new(3);
        for i in 0..5u8 {
            r.insert(i);
            r.insert(i); // again: no second place in line
        }
        assert_eq!(r.len(), 3);
        assert!(!r.contains(&0) && !r.contains(&1));
        assert!((2..5).all(|i| r.contains(&i)));
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
    }
}

//! A fixed-size set of chunk indices, 64 per word. Out-of-range indices are simply absent:
//! no method panics on any index.

use std::ops::Range;

/// A set of indices in `0..len`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BitSet {
    words: Words,
    len: usize,
    ones: usize,
}

/// The words of a [`BitSet`]: a set of at most 64 indices (every file of up to 64 chunks,
/// most of a library of small samples) keeps its one word inline rather than on the heap,
/// which saves an allocation per share (3 MiB at 100,000 shares: issue 21).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Words {
    One(u64),
    Many(Box<[u64]>),
}

impl Default for Words {
    fn default() -> Self {
        Words::One(0)
    }
}

impl Words {
    fn as_slice(&self) -> &[u64] {
        match self {
            Words::One(w) => std::slice::from_ref(w),
            Words::Many(ws) => ws,
        }
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut u64> {
        match self {
            Words::One(w) => (i == 0).then_some(w),
            Words::Many(ws) => ws.get_mut(i),
        }
    }
}

impl BitSet {
    /// An empty set over `0..len`.
    pub fn new(len: usize) -> Self {
        let words = if len <= 64 {
            Words::One(0)
        } else {
            Words::Many(vec![0; len.div_ceil(64)].into_boxed_slice())
        };
        BitSet {
            words,
            len,
            ones: 0,
        }
    }

    /// The set with every index of `0..len`.
    pub fn full(len: usize) -> Self {
        let mut s = BitSet::new(len);
        for i in 0..len {
            s.insert(i);
        }
        s
    }

    /// The universe size.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the universe is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Members.
    pub fn count(&self) -> usize {
        self.ones
    }

    /// True when every index is present.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// Whether `i` is present.
    pub fn contains(&self, i: usize) -> bool {
        i < self.len
            && self
                .words
                .as_slice()
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i`; returns true if it was absent. Out of range: ignored.
    pub fn insert(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        match self.words.get_mut(i / 64) {
            Some(w) if *w & (1 << (i % 64)) == 0 => {
                *w |= 1 << (i % 64);
                self.ones += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes `i`; returns true if it was present.
    pub fn remove(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        match self.words.get_mut(i / 64) {
            Some(w) if *w & (1 << (i % 64)) != 0 => {
                *w &= !(1 << (i % 64));
                self.ones -= 1;
                true
            }
            _ => false,
        }
    }

    /// The members as maximal runs of consecutive indices, in increasing order, a word at a
    /// time where a word is full or empty: summing the bytes of a folder's 10,000 chunks
    /// held (`transfer::engine::view`) walks a few runs, not every chunk.
    pub fn runs(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut open: Option<usize> = None;
        for (wi, &w) in self.words.as_slice().iter().enumerate() {
            let base = wi * 64;
            let mut pos = 0u32;
            while pos < 64 {
                let rest = w >> pos;
                match open {
                    Some(start) => {
                        // The ones from `pos` on (`!rest` has ones above the word's end).
                        pos += (!rest).trailing_zeros().min(64 - pos);
                        if pos < 64 {
                            out.push(start..base + pos as usize);
                            open = None;
                        }
                    }
                    None => {
                        pos += if rest == 0 {
                            64 - pos
                        } else {
                            rest.trailing_zeros()
                        };
                        if pos < 64 {
                            open = Some(base + pos as usize);
                        }
                    }
                }
            }
        }
        if let Some(start) = open {
            out.push(start..self.len);
        }
        out
    }

    /// The members of both `self` and `other`, over `self`'s range.
    pub fn intersection(&self, other: &BitSet) -> BitSet {
        let mut out = BitSet::new(self.len);
        let theirs = other.words.as_slice();
        let mut ones = 0;
        for (i, &a) in self.words.as_slice().iter().enumerate() {
            let w = a & theirs.get(i).copied().unwrap_or(0);
            if let Some(slot) = out.words.get_mut(i) {
                *slot = w;
                ones += w.count_ones() as usize;
            }
        }
        out.ones = ones;
        out
    }

    /// The members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words
            .as_slice()
            .iter()
            .enumerate()
            .flat_map(|(wi, &w)| {
                let mut w = w;
                std::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let b = w.trailing_zeros() as usize;
                    w &= w - 1;
                    Some(wi * 64 + b)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `runs` and `intersection` agree with walking the members one by one, on sets of one
    /// word and of several, with full, empty and partial words and runs across words.
    #[test]
    fn runs_and_intersection_match_the_members() {
        let mut seed = 7u64;
        for len in [0usize, 1, 63, 64, 65, 128, 200, 1000] {
            for density in [0u64, 1, 50, 95, 100] {
                let mut a = BitSet::new(len);
                let mut b = BitSet::new(len);
                for i in 0..len {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    if (seed >> 33) % 100 < density {
                        a.insert(i);
                    }
                    if (seed >> 20) % 100 < 60 {
                        b.insert(i);
                    }
                }
                let members: Vec<usize> = a.iter().collect();
                let from_runs: Vec<usize> = a.runs().into_iter().flatten().collect();
                assert_eq!(from_runs, members, "len {len}, density {density}");
                // Maximal: no two runs touch.
                assert!(a.runs().windows(2).all(|w| w[0].end < w[1].start));
                let both = a.intersection(&b);
                let expected: Vec<usize> = a.iter().filter(|&i| b.contains(i)).collect();
                assert_eq!(both.iter().collect::<Vec<_>>(), expected);
                assert_eq!(both.count(), expected.len());
                assert_eq!(both.len(), len);
            }
        }
    }

    #[test]
    fn basic_ops_and_bounds() {
        let mut s = BitSet::new(130);
        assert!(s.insert(0) && s.insert(64) && s.insert(129));
        assert!(!s.insert(129));
        assert!(!s.insert(130), "out of range is ignored");
        assert!(!s.contains(1_000_000));
        assert_eq!(s.count(), 3);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        assert!(s.remove(64) && !s.remove(64));
        assert_eq!(s.count(), 2);
        assert!(BitSet::full(130).is_full());
        assert!(BitSet::new(0).is_full(), "an empty universe is complete");
    }

    #[test]
    fn one_word_sets_match_many_word_sets() {
        for len in [0, 1, 63, 64, 65, 128, 129] {
            let mut s = BitSet::new(len);
            for i in (0..len + 3).step_by(3) {
                assert_eq!(s.insert(i), i < len, "{len}: {i}");
            }
            let want: Vec<usize> = (0..len).step_by(3).collect();
            assert_eq!(s.iter().collect::<Vec<_>>(), want, "{len}");
            assert_eq!(s.count(), want.len());
            assert!(!s.contains(len), "{len}");
            assert_eq!(BitSet::full(len).count(), len);
        }
    }
}

//! Unit tests of the routing table: bucket mechanics, address quotas (and a property test
//! of them).

use super::*;
use rand::SeedableRng;

/// A global address in a /24 of its own, so that the quotas never bind.
fn addr(n: u16) -> SocketAddr {
    let [hi, lo] = n.to_be_bytes();
    SocketAddr::from(([203, hi, lo, 1], 4000))
}

fn table(local: Id) -> RoutingTable {
    RoutingTable::new(local, DiversityLimits::default())
}

/// `n` distinct contacts that all fall in bucket `b` of a table centred on `local`.
fn in_bucket(local: &Id, b: usize, n: usize, seed: u64) -> Vec<Contact> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Contact {
            id: local.random_in_bucket(b, &mut rng),
            // Distinct per seed and index, so no two contacts share an address.
            addr: addr((seed as u16).wrapping_mul(512).wrapping_add(i as u16)),
        })
        .collect()
}

/// Test helpers, here beside the tests that use them (`dht::tests` checks quotas too).
impl RoutingTable {
    /// Makes the filters say "maybe" of everything: the next call makes every pass, as the
    /// table did before it had filters (for tests).
    pub(crate) fn saturate_seen(&mut self) {
        self.seen_addrs = AddrFilter::full();
        self.seen_nets = NetFilter::full();
    }

    /// The buckets, entries, replacements and eviction PINGs, as text (for tests).
    pub(crate) fn contents(&self) -> String {
        format!("{:?}", self.buckets)
    }

    /// Whether the filters hold everything they must (for tests).
    pub(crate) fn check_seen(&self) -> Result<(), String> {
        for (i, b) in self.buckets.iter().enumerate() {
            for e in &b.entries {
                if !self.seen_addrs.may_contain(addr_hash(&e.contact.addr))
                    || !self
                        .seen_nets
                        .may_contain(net_hash(&Origin::of(e.contact.addr).network))
                {
                    return Err(format!(
                        "bucket {i}: entry {:?} not in the filters",
                        e.contact
                    ));
                }
            }
            let newcomer = b.pending.map(|(_, n)| n);
            for c in b.replacements.iter().chain(newcomer.iter()) {
                if !self.seen_addrs.may_contain(addr_hash(&c.addr)) {
                    return Err(format!("bucket {i}: {c:?} not in the address filter"));
                }
            }
            if let Some((head, _)) = b.pending {
                if !b.entries.iter().any(|e| e.contact.id == head) {
                    return Err(format!(
                        "bucket {i}: eviction PING of {head:?}, not an entry"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Counts every bucket and checks every quota (for tests).
    pub(crate) fn check_quotas(&self) -> Result<(), String> {
        use crate::dht::diversity::{Network, Source};
        use std::collections::HashMap;
        let mut sources: HashMap<Source, usize> = HashMap::new();
        let mut networks: HashMap<Network, usize> = HashMap::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let mut bs: HashMap<Source, usize> = HashMap::new();
            let mut bn: HashMap<Network, usize> = HashMap::new();
            for e in &b.entries {
                let o = Origin::of(e.contact.addr);
                *bs.entry(o.source).or_default() += 1;
                *bn.entry(o.network).or_default() += 1;
                *sources.entry(o.source).or_default() += 1;
                *networks.entry(o.network).or_default() += 1;
            }
            if let Some((s, c)) = bs
                .iter()
                .find(|(_, &c)| c > self.limits.source.contacts_per_bucket)
            {
                return Err(format!("bucket {i}: {c} contacts of {s:?}"));
            }
            if let Some((n, c)) = bn
                .iter()
                .find(|(n, &c)| c > self.limits.network_quota(n).contacts_per_bucket)
            {
                return Err(format!("bucket {i}: {c} contacts of {n:?}"));
            }
        }
        for (s, &c) in &sources {
            if c > self.limits.source.contacts_per_table {
                return Err(format!("{c} contacts of {s:?}"));
            }
        }
        for (n, &c) in &networks {
            if c > self.limits.network_quota(n).contacts_per_table {
                return Err(format!("{c} contacts of {n:?}"));
            }
        }
        Ok(())
    }
}

#[test]
fn bucket_placement_follows_leading_zeros() {
    let local = Id([0; 32]);
    let t = table(local);
    let mut far = [0u8; 32];
    far[0] = 0x80;
    assert_eq!(t.bucket_index(&Id(far)), Some(0));
    let mut near = [0u8; 32];
    near[31] = 1;
    assert_eq!(t.bucket_index(&Id(near)), Some(255));
    assert_eq!(t.bucket_index(&local), None);
}

#[test]
fn full_bucket_keeps_fresh_old_contacts() {
    let local = Id([7; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let cs = in_bucket(&local, 0, K + 1, 1);
    for c in &cs[..K] {
        assert_eq!(t.insert(*c, now), InsertResult::Inserted);
    }
    // Everyone was seen just now: the newcomer is cached, nobody is pinged.
    assert_eq!(t.insert(cs[K], now), InsertResult::Cached);
    assert_eq!(t.bucket_len(0), K);
    assert!(t.get(&cs[K].id).is_none());
}

#[test]
fn stale_oldest_is_pinged_and_evicted_when_dead() {
    let local = Id([7; 32]);
    let mut t = table(local);
    let t0 = Instant::now();
    let cs = in_bucket(&local, 0, K + 1, 2);
    for c in &cs[..K] {
        let _ = t.insert(*c, t0);
    }
    let later = t0 + FRESH + Duration::from_secs(1);
    assert_eq!(
        t.insert(cs[K], later),
        InsertResult::PingOldest { ping: cs[0] }
    );
    // A second newcomer while the ping is out does not start another ping.
    let extra = in_bucket(&local, 0, 1, 99)[0];
    assert_eq!(t.insert(extra, later), InsertResult::Cached);
    t.on_ping_result(&cs[0].id, false, later);
    assert!(t.get(&cs[0].id).is_none());
    assert!(t.get(&cs[K].id).is_some());
    assert_eq!(t.bucket_len(0), K);
}

#[test]
fn stale_oldest_that_answers_stays_and_moves_to_tail() {
    let local = Id([7; 32]);
    let mut t = table(local);
    let t0 = Instant::now();
    let cs = in_bucket(&local, 3, K + 1, 3);
    for c in &cs[..K] {
        let _ = t.insert(*c, t0);
    }
    let later = t0 + FRESH * 2;
    assert!(matches!(
        t.insert(cs[K], later),
        InsertResult::PingOldest { .. }
    ));
    t.on_ping_result(&cs[0].id, true, later);
    assert!(t.get(&cs[0].id).is_some());
    assert!(t.get(&cs[K].id).is_none());
    // It is now the most recently seen: the next stale candidate is cs[1].
    let n2 = in_bucket(&local, 3, 1, 77)[0];
    assert_eq!(
        t.insert(n2, later + FRESH),
        InsertResult::PingOldest { ping: cs[1] }
    );
}

#[test]
fn repeated_failures_promote_a_replacement() {
    let local = Id([1; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let cs = in_bucket(&local, 1, K + 1, 4);
    for c in &cs {
        let _ = t.insert(*c, now);
    }
    for i in 1..MAX_FAILURES {
        assert!(!t.on_failure(&cs[5].id, now), "failure {i}");
    }
    assert!(t.on_failure(&cs[5].id, now));
    assert!(t.get(&cs[5].id).is_none());
    assert!(t.get(&cs[K].id).is_some(), "replacement promoted");
}

#[test]
fn known_id_keeps_its_address() {
    let local = Id([1; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let c = in_bucket(&local, 2, 1, 5)[0];
    let _ = t.insert(c, now);
    let spoof = Contact {
        id: c.id,
        addr: addr(9),
    };
    assert_eq!(
        t.insert(spoof, now),
        InsertResult::OtherAddress { known: c.addr }
    );
    assert_eq!(t.get(&c.id).unwrap().contact.addr, c.addr);
}

#[test]
fn closest_is_sorted_and_excludes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let local = Id::random(&mut rng);
    let mut t = table(local);
    let now = Instant::now();
    let cs: Vec<Contact> = (0..200)
        .map(|i| Contact {
            id: Id::random(&mut rng),
            addr: addr(i),
        })
        .collect();
    for c in &cs {
        let _ = t.insert(*c, now);
    }
    let target = Id::random(&mut rng);
    let got = t.closest(&target, K, Some(&cs[0].id));
    assert_eq!(got.len(), K);
    for w in got.windows(2) {
        assert!(w[0].id.distance(&target) <= w[1].id.distance(&target));
    }
    assert!(!got.iter().any(|c| c.id == cs[0].id));
    // Brute force: the k closest of everything in the table.
    let mut all: Vec<Contact> = t
        .iter()
        .map(|e| e.contact)
        .filter(|c| c.id != cs[0].id)
        .collect();
    all.sort_by_key(|c| c.id.distance(&target));
    assert_eq!(got, all[..K].to_vec());
}

#[test]
fn refresh_covers_buckets_up_to_deepest() {
    let local = Id([0; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let c = in_bucket(&local, 4, 1, 8)[0];
    let _ = t.insert(c, now);
    let due = t.buckets_to_refresh(now, Duration::from_secs(900));
    assert_eq!(due, vec![0, 1, 2, 3, 4]);
    t.touch_bucket(&c.id, now);
    let due = t.buckets_to_refresh(now, Duration::from_secs(900));
    assert_eq!(due, vec![0, 1, 2, 3]);
}

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

#[test]
fn one_address_gets_one_contact_per_bucket_and_two_in_all() {
    let local = Id([9; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let mut inserted = Vec::new();
    // 400 IDs over 20 buckets, from one IP and 400 ports.
    for i in 0..400u16 {
        let c = Contact {
            id: local.random_in_bucket(usize::from(i % 20), &mut rng),
            addr: at([198, 51, 100, 7], 1000 + i),
        };
        match t.insert(c, now) {
            InsertResult::Inserted => inserted.push(c),
            InsertResult::Refused(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(inserted.len(), 2);
    // The refusal says which quota: the bucket's, then the table's.
    let same_bucket = Contact {
        id: local.random_in_bucket(t.bucket_index(&inserted[0].id).unwrap(), &mut rng),
        addr: at([198, 51, 100, 7], 9),
    };
    assert_eq!(
        t.insert(same_bucket, now),
        InsertResult::Refused(QuotaHit {
            level: Level::Source,
            scope: Scope::Bucket,
            max: 1
        })
    );
    let elsewhere = Contact {
        id: local.random_in_bucket(40, &mut rng),
        addr: at([198, 51, 100, 7], 9),
    };
    assert!(!t.wants(&elsewhere));
    assert_eq!(
        t.insert(elsewhere, now),
        InsertResult::Refused(QuotaHit {
            level: Level::Source,
            scope: Scope::Table,
            max: 2
        })
    );
    t.check_quotas().unwrap();
}

#[test]
fn a_slash_24_gets_two_per_bucket_and_ten_in_all() {
    let local = Id([3; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut per_bucket = [0usize; 30];
    for i in 0..254u8 {
        let b = usize::from(i) % 30;
        let c = Contact {
            id: local.random_in_bucket(b, &mut rng),
            addr: at([198, 51, 100, i + 1], 4000),
        };
        if t.insert(c, now) == InsertResult::Inserted {
            per_bucket[b] += 1;
        }
    }
    assert_eq!(per_bucket.iter().sum::<usize>(), 10);
    assert!(per_bucket.iter().all(|&n| n <= 2), "{per_bucket:?}");
    // Another /24 is not affected.
    let other = Contact {
        id: local.random_in_bucket(0, &mut rng),
        addr: at([198, 51, 101, 1], 4000),
    };
    assert!(t.wants(&other));
    assert_eq!(t.insert(other, now), InsertResult::Inserted);
    t.check_quotas().unwrap();
}

#[test]
fn loopback_nodes_count_one_source_per_port() {
    // A test network on one machine: 60 nodes on 127.0.0.1 all fit, as room allows.
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let local = Id::random(&mut rng);
    let mut t = table(local);
    let now = Instant::now();
    let nodes: Vec<Contact> = (0..60u16)
        .map(|i| Contact {
            id: Id::random(&mut rng),
            addr: at([127, 0, 0, 1], 10_000 + i),
        })
        .collect();
    let mut expected = 0;
    for c in &nodes {
        let room = t.bucket_len(t.bucket_index(&c.id).unwrap()) < K;
        expected += usize::from(room);
        let r = t.insert(*c, now);
        assert!(
            matches!(r, InsertResult::Inserted | InsertResult::Cached),
            "{r:?}"
        );
    }
    assert_eq!(t.len(), expected);
    // But one of those addresses cannot bring more IDs: one address holds one node, so
    // each ID proven there replaces the one before (spec section 6, rule 5).
    let extra = |rng: &mut rand::rngs::StdRng| Contact {
        id: Id::random(rng),
        addr: nodes[0].addr,
    };
    let before = t.len();
    for _ in 0..50 {
        let _ = t.insert(extra(&mut rng), now);
        t.check_quotas().unwrap();
    }
    let at_addr = t.iter().filter(|e| e.contact.addr == nodes[0].addr).count();
    assert_eq!(at_addr, 1, "one ID at the address");
    assert!(t.len() <= before, "{} contacts, {before} before", t.len());
}

#[test]
fn a_replacement_over_quota_is_not_promoted() {
    let local = Id([5; 32]);
    let mut t = table(local);
    let now = Instant::now();
    let cs = in_bucket(&local, 0, K, 13);
    for c in &cs {
        assert_eq!(t.insert(*c, now), InsertResult::Inserted);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let ip = [198, 51, 100, 9];
    // Cached while its address is within quota ...
    let cached = Contact {
        id: local.random_in_bucket(0, &mut rng),
        addr: at(ip, 1),
    };
    assert_eq!(t.insert(cached, now), InsertResult::Cached);
    // ... then the same IP uses up its table quota elsewhere.
    for (b, port) in [(1, 2), (2, 3)] {
        let c = Contact {
            id: local.random_in_bucket(b, &mut rng),
            addr: at(ip, port),
        };
        assert_eq!(t.insert(c, now), InsertResult::Inserted);
    }
    for _ in 0..MAX_FAILURES {
        let _ = t.on_failure(&cs[3].id, now);
    }
    assert!(t.get(&cs[3].id).is_none());
    assert!(t.get(&cached.id).is_none(), "promoted over its quota");
    assert_eq!(t.bucket_len(0), K - 1);
    t.check_quotas().unwrap();
}

mod quota_properties {
    use super::*;
    use proptest::prelude::*;

    /// One step: an attacker contact from 198.51.100.0/24 (host, port, bucket), an
    /// honest one, a failure of the n-th entry, or an eviction ping's outcome.
    #[derive(Clone, Debug)]
    enum Op {
        Attacker { host: u8, port: u16, bucket: usize },
        Honest { bucket: usize },
        Fail { nth: usize },
        PingResult { nth: usize, alive: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), any::<u16>(), 0usize..24)
                .prop_map(|(host, port, bucket)| Op::Attacker { host, port, bucket }),
            2 => (0usize..24).prop_map(|bucket| Op::Honest { bucket }),
            1 => any::<usize>().prop_map(|nth| Op::Fail { nth }),
            1 => (any::<usize>(), any::<bool>())
                .prop_map(|(nth, alive)| Op::PingResult { nth, alive }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever one /24 sends, and whatever happens to the table meanwhile, it
        /// never holds more than 2 contacts of a bucket or 10 of the table, no IP of it
        /// more than 1 of a bucket or 2 of the table, and the counts stay exact.
        #[test]
        fn one_network_never_exceeds_its_quotas(
            ops in proptest::collection::vec(op(), 1..300),
            seed in any::<u64>(),
        ) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let local = Id::random(&mut rng);
            let mut t = table(local);
            let t0 = Instant::now();
            let mut honest = 0u16;
            for (step, op) in ops.into_iter().enumerate() {
                // Time moves on, so full buckets question their oldest entries.
                let now = t0 + Duration::from_secs(20 * step as u64);
                match op {
                    Op::Attacker { host, port, bucket } => {
                        let c = Contact {
                            id: local.random_in_bucket(bucket, &mut rng),
                            addr: at([198, 51, 100, host], port),
                        };
                        let _ = t.insert(c, now);
                    }
                    Op::Honest { bucket } => {
                        honest = honest.wrapping_add(1);
                        let c = Contact {
                            id: local.random_in_bucket(bucket, &mut rng),
                            addr: addr(honest),
                        };
                        let _ = t.insert(c, now);
                    }
                    Op::Fail { nth } => {
                        let ids: Vec<Id> = t.iter().map(|e| e.contact.id).collect();
                        if !ids.is_empty() {
                            let _ = t.on_failure(&ids[nth % ids.len()], now);
                        }
                    }
                    Op::PingResult { nth, alive } => {
                        let ids: Vec<Id> = t.iter().map(|e| e.contact.id).collect();
                        if !ids.is_empty() {
                            t.on_ping_result(&ids[nth % ids.len()], alive, now);
                        }
                    }
                }
                prop_assert!(t.check_quotas().is_ok(), "{:?}", t.check_quotas());
            }
            let attacker = t
                .iter()
                .filter(|e| matches!(e.contact.addr.ip(), std::net::IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100]))
                .count();
            prop_assert!(attacker <= 10);
        }
    }
}

#[test]
fn in_prefix_is_the_prefix_comparison() {
    let addrs: Vec<SocketAddr> = [
        "10.0.3.7:4000",
        "10.0.3.8:1",
        "10.0.4.7:4000",
        "203.0.113.9:5",
        "127.0.0.1:9",
        "[::ffff:10.0.3.9]:4000",
        "[::ffff:203.0.113.1]:7",
        "[2001:db8::1]:4000",
        "[2001:db8::2]:1",
        "[2001:db9::1]:1",
        "[fd00::1]:3",
        "[::1]:3",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    for a in &addrs {
        for b in &addrs {
            let prefix = Network::prefix_of(canonical_addr(*b).ip());
            let slow = Network::prefix_of(canonical_addr(*a).ip()) == prefix;
            assert_eq!(in_prefix(a, &prefix), slow, "{a} in {b}'s prefix");
        }
    }
}

mod seen_properties {
    use super::*;
    use proptest::prelude::*;

    /// One step on a table: a contact heard from (from a small pool of addresses, so that
    /// addresses come back under new IDs), a failure, an eviction ping's outcome, a removal,
    /// or an address forgotten.
    #[derive(Clone, Debug)]
    enum Op {
        Heard { bucket: usize, addr: usize },
        Fail { nth: usize },
        PingResult { nth: usize, alive: bool },
        Remove { nth: usize },
        Forget { addr: usize },
    }

    /// The addresses: IPv4 in a few /24s, loopback ports, IPv6, and an IPv4-mapped IPv6
    /// address of one of the IPv4 ones.
    fn pool(k: usize) -> SocketAddr {
        match k % 5 {
            0 | 1 => at([198, 51, (k % 3) as u8, (k / 5) as u8], 4000),
            2 => at([127, 0, 0, 1], 5000 + (k / 5) as u16),
            3 => SocketAddr::from((
                [0x2001, 0xdb8, 0, (k % 2) as u16, 0, 0, 0, (k / 5) as u16],
                6000,
            )),
            _ => SocketAddr::from(([0, 0, 0, 0, 0, 0xffff, 0xc633, (k / 5) as u16], 4000)),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0usize..12, 0usize..60).prop_map(|(bucket, addr)| Op::Heard { bucket, addr }),
            2 => any::<usize>().prop_map(|nth| Op::Fail { nth }),
            2 => (any::<usize>(), any::<bool>())
                .prop_map(|(nth, alive)| Op::PingResult { nth, alive }),
            1 => any::<usize>().prop_map(|nth| Op::Remove { nth }),
            1 => (0usize..60).prop_map(|addr| Op::Forget { addr }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The filters change nothing but the work: a table that uses them and one made to
        /// pass over everything at every step (as before the filters) answer every call
        /// alike and hold the same contacts, and the filters always hold what they must.
        #[test]
        fn the_filters_change_no_outcome(
            ops in proptest::collection::vec(op(), 1..400),
            seed in any::<u64>(),
        ) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let local = Id::random(&mut rng);
            let mut t = table(local);
            let mut every_pass = table(local);
            let t0 = Instant::now();
            for (step, op) in ops.into_iter().enumerate() {
                let now = t0 + Duration::from_secs(20 * step as u64);
                every_pass.saturate_seen();
                let ids: Vec<Id> = t.iter().map(|e| e.contact.id).collect();
                let pick = |nth: usize| (!ids.is_empty()).then(|| ids[nth % ids.len()]);
                match op {
                    Op::Heard { bucket, addr } => {
                        let c = Contact {
                            id: local.random_in_bucket(bucket, &mut rng),
                            addr: pool(addr),
                        };
                        prop_assert_eq!(t.wants(&c), every_pass.wants(&c));
                        prop_assert_eq!(t.would_take(&c, now), every_pass.would_take(&c, now));
                        prop_assert_eq!(t.insert(c, now), every_pass.insert(c, now));
                    }
                    Op::Fail { nth } => {
                        if let Some(id) = pick(nth) {
                            prop_assert_eq!(t.on_failure(&id, now), every_pass.on_failure(&id, now));
                        }
                    }
                    Op::PingResult { nth, alive } => {
                        if let Some(id) = pick(nth) {
                            t.on_ping_result(&id, alive, now);
                            every_pass.on_ping_result(&id, alive, now);
                        }
                    }
                    Op::Remove { nth } => {
                        if let Some(id) = pick(nth) {
                            t.remove(&id);
                            every_pass.remove(&id);
                        }
                    }
                    Op::Forget { addr } => {
                        let keep = Id::random(&mut rng);
                        prop_assert_eq!(
                            t.forget_addr(pool(addr), &keep),
                            every_pass.forget_addr(pool(addr), &keep)
                        );
                    }
                }
                prop_assert_eq!(t.contents(), every_pass.contents());
                prop_assert!(t.check_seen().is_ok(), "{:?}", t.check_seen());
                prop_assert!(t.check_quotas().is_ok(), "{:?}", t.check_quotas());
            }
        }
    }
}

mod closest_properties {
    use super::*;
    use proptest::prelude::*;

    /// Where the target lies: anywhere, in one of the table's buckets, the local ID itself,
    /// or a contact of the table.
    #[derive(Clone, Debug)]
    enum Target {
        Random,
        InBucket(usize),
        Local,
        Member(usize),
    }

    /// A bucket near the top of the table, or one so deep that its contacts agree in the
    /// first 56 bits of their distance to any target (which `closest_where` then sorts on
    /// whole distances).
    fn bucket() -> impl Strategy<Value = usize> {
        prop_oneof![3 => 0usize..14, 1 => 50usize..70]
    }

    fn target() -> impl Strategy<Value = Target> {
        prop_oneof![
            Just(Target::Random),
            bucket().prop_map(Target::InBucket),
            Just(Target::Local),
            any::<usize>().prop_map(Target::Member),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The buckets taken in distance order give exactly the n closest accepted contacts,
        /// nearest first, as sorting the whole table does: for targets anywhere, deep in the
        /// table, at the local ID and on a contact, with and without an excluded ID and a
        /// filter, for buckets near the top and very deep ones.
        #[test]
        fn closest_is_the_sorted_whole_table(
            buckets in proptest::collection::vec(bucket(), 0..300),
            seed in any::<u64>(),
            at in target(),
            n in 0usize..50,
            exclude_nth in proptest::option::of(any::<usize>()),
            odd_only in any::<bool>(),
        ) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let local = Id::random(&mut rng);
            let mut t = table(local);
            let now = Instant::now();
            for (i, b) in buckets.into_iter().enumerate() {
                let c = Contact { id: local.random_in_bucket(b, &mut rng), addr: addr(i as u16) };
                let _ = t.insert(c, now);
            }
            let ids: Vec<Id> = t.iter().map(|e| e.contact.id).collect();
            let target = match at {
                Target::Random => Id::random(&mut rng),
                Target::InBucket(b) => local.random_in_bucket(b, &mut rng),
                Target::Local => local,
                Target::Member(k) if !ids.is_empty() => ids[k % ids.len()],
                Target::Member(_) => Id::random(&mut rng),
            };
            let exclude = exclude_nth.filter(|_| !ids.is_empty()).map(|k| ids[k % ids.len()]);
            // Half the contacts, by a bit of their ID that says nothing of their distance.
            let keep = |c: &Contact| !odd_only || c.id.0[31] & 1 == 1;
            let got = t.closest_where(&target, n, exclude.as_ref(), keep);
            let mut want: Vec<Contact> = t
                .iter()
                .map(|e| e.contact)
                .filter(|c| Some(c.id) != exclude && keep(c))
                .collect();
            want.sort_by_key(|c| c.id.distance(&target));
            want.truncate(n);
            prop_assert_eq!(got, want);
        }
    }
}

#[test]
fn a_requester_is_refreshed_only_at_its_own_address_and_never_added() {
    let local = Id([0; 32]);
    let mut t = table(local);
    let t0 = Instant::now();
    let cs = in_bucket(&local, 3, 3, 21);
    for c in &cs {
        let _ = t.insert(*c, t0);
    }
    let _ = t.on_failure(&cs[0].id, t0);
    let later = t0 + Duration::from_secs(5);
    // Known at that address: refreshed, and last in its bucket.
    assert!(t.heard_from(&cs[0], later));
    let e = t.get(&cs[0].id).unwrap();
    assert_eq!((e.last_seen, e.failures), (later, 0));
    assert_eq!(t.iter().last().map(|e| e.contact.id), Some(cs[0].id));
    // Known at another address: held, not refreshed, not moved.
    let elsewhere = Contact {
        addr: addr(999),
        ..cs[1]
    };
    assert!(t.heard_from(&elsewhere, later));
    assert_eq!(t.get(&cs[1].id).unwrap().last_seen, t0);
    assert_eq!(t.get(&cs[1].id).unwrap().contact.addr, cs[1].addr);
    // Unknown, or the local ID: not held, and not taken in.
    let stranger = in_bucket(&local, 5, 1, 22)[0];
    assert!(!t.heard_from(&stranger, later));
    assert!(t.get(&stranger.id).is_none());
    assert!(!t.heard_from(
        &Contact {
            id: local,
            addr: addr(7)
        },
        later
    ));
    assert_eq!(t.iter().count(), 3);
}

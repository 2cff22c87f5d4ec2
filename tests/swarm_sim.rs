//! Whole-swarm tests of the transfer engine on the deterministic swarm simulator
//! (`peershare::sim::swarm`): one seeder with scarce upload and 30 leechers.
//!
//! Every chunk a leecher receives is hashed against the manifest (`verify`), so "complete"
//! means the right bytes. Assertions are on counts and ratios with wide margins, never on
//! wall-clock time. Failure messages carry the report and the `peershare-sim` command that
//! replays the run; set `PEERSHARE_SIM_SEED` to run on another seed.

use std::time::Duration;

use peershare::sim::swarm::{SwarmReport, SwarmScenario, MB};

fn seed() -> u64 {
    std::env::var("PEERSHARE_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// 1 seeder (1 MB/s up: 8.4 s per copy of the file) and 30 leechers joining over 10 s, an
/// 8 MiB file in 128 chunks of 64 KiB.
fn small_swarm(seed: u64) -> SwarmScenario {
    let mut s = SwarmScenario::new(30);
    s.file_size = 8 << 20;
    s.chunk_size = Some(64 << 10);
    s.seeder.up = MB;
    s.join_over = Duration::from_secs(10);
    s.verify = true;
    s.max_time = Duration::from_secs(600);
    s.seed = seed;
    s
}

fn run(s: &SwarmScenario, super_seed: bool) -> SwarmReport {
    match s.run(super_seed) {
        Ok(r) => r,
        Err(e) => panic!("simulation failed: {e}\nreplay: {}", s.replay_command()),
    }
}

#[test]
fn a_small_swarm_is_deterministic_and_everyone_gets_the_file() {
    let s = small_swarm(seed());
    let a = run(&s, true);
    let why = format!("\n{a:#?}\nreplay: {}", s.replay_command());
    assert!(a.all_complete(), "{why}");
    assert_eq!(a.completed, 30, "{why}");
    let b = run(&s, true);
    assert_eq!(a.without_wall_time(), b.without_wall_time(), "{why}");
    // The seed matters: another one is another run.
    let other = run(&small_swarm(seed().wrapping_add(1)), true);
    assert_ne!(a.frames, other.frames, "{why}");
}

#[test]
fn super_seeding_spends_the_seeders_upload_on_chunks_the_swarm_lacks() {
    let s = small_swarm(seed());
    let plain = run(&s, false);
    let sup = run(&s, true);
    let why = format!(
        "\nplain: {plain:#?}\nsuper-seeding: {sup:#?}\nreplay: {}",
        s.replay_command()
    );
    assert!(plain.all_complete() && sup.all_complete(), "{why}");
    let chunks = sup.chunks as u64;
    // Every chunk goes out once before any goes out twice (a little slack for a chunk
    // on offer at a peer that was choked meanwhile).
    assert!(sup.seeder_first_round <= chunks + chunks / 20, "{why}");
    assert!(plain.seeder_first_round > sup.seeder_first_round, "{why}");
    // The seeder's share of all bytes drops by a fifth at least (measured: about half).
    assert!(sup.seeder_share() < 0.8 * plain.seeder_share(), "{why}");
    assert!(sup.seeder_bytes < plain.seeder_bytes, "{why}");
}

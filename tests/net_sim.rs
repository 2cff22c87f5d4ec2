//! The whole-network simulator (`peershare-sim net`): 50 complete nodes, each the node core
//! the binary runs, on a virtual network with loss, NATs and crashes. Every download must
//! complete with exactly the original bytes, and a seed must replay the same run.

use peershare::sim::nodes::NetScenario;

fn small(seed: u64) -> NetScenario {
    NetScenario {
        seed,
        ..NetScenario::new(50)
    }
}

#[test]
fn fifty_nodes_with_nats_and_crashes_complete_every_download() {
    let s = small(1);
    let r = s
        .run()
        .unwrap_or_else(|e| panic!("{e}; replay: {}", s.replay_command()));
    eprintln!("{r}");
    assert!(
        r.behind_nat > 0 && r.crashes > 0,
        "the run has NATs and crashes: {r}"
    );
    assert_eq!(r.requested, s.downloads);
    assert_eq!(
        r.files_checked, r.completed,
        "every finished file was compared"
    );
    assert!(r.all_good(), "{r}");
}

#[test]
fn a_seed_replays_the_same_run() {
    let a = small(7).run().unwrap();
    let b = small(7).run().unwrap();
    let strip = |r: &peershare::sim::nodes::NetReport| {
        let text = r.to_string();
        text.lines()
            .filter(|l| !l.contains("wall time"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&a), strip(&b));
}

//! The secure session's costs (protocol-spec/secure.md), for `make bench` (tools/bench):
//! AEAD throughput through snow (the two record ciphers: AES-256-GCM, used when both sides have
//! AES in hardware, and ChaChaPoly; 65519-byte records, seal then open), complete handshakes per second on one core, and the time to the first byte of a
//! loopback TCP connection with and without the session.
//!
//! `cargo run --release --example secure_bench [MIB]` (default 1024 MiB per cipher).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use peershare::identity::Identity;
use peershare::net::secure_io::SecureStream;
use peershare::secure::{Handshake, LocalKeys, Outcome, MAX_PLAIN};

fn transport_pair(params: &str) -> (snow::TransportState, snow::TransportState) {
    let b = || snow::Builder::new(params.parse().unwrap());
    let ki = b().generate_keypair().unwrap();
    let kr = b().generate_keypair().unwrap();
    let mut i = b()
        .local_private_key(&ki.private)
        .build_initiator()
        .unwrap();
    let mut r = b()
        .local_private_key(&kr.private)
        .build_responder()
        .unwrap();
    let (mut m, mut p) = (vec![0u8; 1024], vec![0u8; 1024]);
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut p).unwrap();
    let n = r.write_message(&[], &mut m).unwrap();
    i.read_message(&m[..n], &mut p).unwrap();
    let n = i.write_message(&[], &mut m).unwrap();
    r.read_message(&m[..n], &mut p).unwrap();
    (
        i.into_transport_mode().unwrap(),
        r.into_transport_mode().unwrap(),
    )
}

/// MiB/s of sealing then opening `mib` MiB in full records, on one core.
fn aead(params: &str, mib: usize) -> f64 {
    let (mut i, mut r) = transport_pair(params);
    let plain = vec![7u8; MAX_PLAIN];
    let (mut ct, mut out) = (vec![0u8; 65535], vec![0u8; 65535]);
    let records = mib * (1 << 20) / MAX_PLAIN;
    let t0 = Instant::now();
    for _ in 0..records {
        let n = i.write_message(&plain, &mut ct).unwrap();
        r.read_message(&ct[..n], &mut out).unwrap();
    }
    (records * MAX_PLAIN) as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64()
}

fn keys() -> LocalKeys {
    LocalKeys::generate(Identity::generate()).unwrap()
}

/// Complete handshakes (both sides, one thread) per second.
fn handshakes(secs: f64) -> f64 {
    let (a, b) = (keys(), keys());
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        let mut i = Handshake::initiator(&a, Some(b.node_id())).unwrap();
        let mut r = Handshake::responder(&b).unwrap();
        r.handle_input(&i.take_output()).unwrap();
        i.handle_input(&r.take_output()).unwrap();
        r.handle_input(&i.take_output()).unwrap();
        assert_eq!(
            (i.outcome(), r.outcome()),
            (Outcome::Finished, Outcome::Finished)
        );
        let _ = (i.into_session().unwrap(), r.into_session().unwrap());
        n += 1;
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

/// Median time from connect to the first byte received, over `rounds` connections.
fn first_byte(secure: bool, rounds: usize) -> Duration {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let k = keys();
        for _ in 0..rounds {
            let (s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            if secure {
                let mut s = SecureStream::accept(s, &k).unwrap();
                s.write_all(b"x").unwrap();
                let _ = s.read(&mut [0u8; 1]);
            } else {
                let mut s = s;
                s.write_all(b"x").unwrap();
                let _ = s.read(&mut [0u8; 1]);
            }
        }
    });
    let k = keys();
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t0 = Instant::now();
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 1];
        if secure {
            let mut s = SecureStream::connect(s, &k, None).unwrap();
            s.read_exact(&mut b).unwrap();
            times.push(t0.elapsed());
        } else {
            let mut s = s;
            s.read_exact(&mut b).unwrap();
            times.push(t0.elapsed());
        }
    }
    server.join().unwrap();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let gcm = aead("Noise_XX_25519_AESGCM_SHA256", mib);
    let chacha = aead("Noise_XX_25519_ChaChaPoly_SHA256", mib);
    println!("secure: AEAD seal+open on one core, {mib} MiB in 65519-byte records");
    let here = if peershare::secure::aes_gcm_in_hardware() {
        "this CPU offers AES-256-GCM: sessions between two such nodes use it"
    } else {
        "this CPU has no AES instructions: its sessions use ChaChaPoly"
    };
    println!("  AES-256-GCM  {gcm:8.0} MiB/s");
    println!(
        "  ChaChaPoly   {chacha:8.0} MiB/s   AES-GCM / ChaChaPoly = {:.2} ({here})",
        gcm / chacha
    );
    let hs = handshakes(3.0);
    println!(
        "  handshakes: {hs:.0} complete XX handshakes/s on one core (both sides, identity proofs \
         signed and verified); an accepting node does about half the work of one"
    );
    let plain = first_byte(false, 200);
    let sec = first_byte(true, 200);
    println!(
        "  time to first byte on loopback (median of 200): plain TCP {:.0} us, with the session \
         {:.0} us: +{:.0} us",
        plain.as_secs_f64() * 1e6,
        sec.as_secs_f64() * 1e6,
        (sec.as_secs_f64() - plain.as_secs_f64()) * 1e6
    );
}

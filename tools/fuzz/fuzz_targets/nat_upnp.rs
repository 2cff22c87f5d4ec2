//! UPnP-IGD (src/nat/upnp/): a router's (or anyone's) SSDP answers, HTTP responses,
//! descriptions and SOAP answers, raw from the fuzzer, against the parsers and the client.
//! Invariants: never a panic, never an allocation past the input's size (the capped
//! allocator turns one into a crash); the client only ever sends requests to the address
//! an SSDP answer named.
#![no_main]

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use peershare::nat::upnp::codec::{control_url, parse_http, parse_ssdp, soap_result, HttpUrl};
use peershare::nat::upnp::{UpnpClient, UpnpConfig, UpnpIo};

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fuzz_target!(|data: &[u8]| {
    let base = HttpUrl::parse("http://192.0.2.1:5000/rootDesc.xml", None).expect("a URL");
    let _ = parse_ssdp(data);
    let _ = control_url(data, &base);
    if let Ok((code, body)) = parse_http(data) {
        let _ = soap_result(code, body, Some("NewExternalIPAddress"));
    }
    // The client: the input split at 0xff bytes is a script of answers.
    let now = Instant::now();
    let mut c = UpnpClient::new(UpnpConfig {
        port: 4001,
        local: Ipv4Addr::new(192, 0, 2, 2),
        lifetime: Duration::from_secs(60),
        ..UpnpConfig::default()
    });
    c.start(now);
    let mut last_http = None;
    for (i, part) in data.split(|b| *b == 0xff).enumerate() {
        while let Some(io) = c.poll_io() {
            if let UpnpIo::Http { id, .. } = io {
                last_http = Some(id);
            }
        }
        match (i % 3, last_http) {
            (0, _) | (_, None) => {
                let _ = c.handle_ssdp(now, part);
            }
            (1, Some(id)) => {
                let _ = c.handle_http(now, id, Some(part));
            }
            (_, Some(id)) => {
                let _ = c.handle_http(now, id, None);
            }
        }
        while c.poll_event().is_some() {}
    }
    let _ = c.shutdown(now);
    while c.poll_io().is_some() {}
});

//! The UPnP-IGD client against a fake router that answers the way miniupnpd does.

use super::*;

const SSDP: &[u8] = b"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://192.0.2.89:5000/rootDesc.xml\r\n\r\n";
const DESC: &str = "<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL></service></serviceList></device></root>";

fn http(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the fake router answers to a request; `refuse` is a UPnP error code for every
/// AddPortMapping with a lease other than 0.
fn router(req: &[u8], refuse: Option<u32>) -> Vec<u8> {
    let text = String::from_utf8_lossy(req);
    if text.starts_with("GET /rootDesc.xml ") {
        return http("200 OK", DESC);
    }
    assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\n"), "{text}");
    if text.contains("#GetExternalIPAddress") {
        return http(
            "200 OK",
            "<u:GetExternalIPAddressResponse><NewExternalIPAddress>203.0.113.31</NewExternalIPAddress></u:GetExternalIPAddressResponse>",
        );
    }
    if let Some(code) = refuse.filter(|_| !text.contains("<NewLeaseDuration>0<")) {
        return http(
            "500 Internal Server Error",
            &format!("<UPnPError><errorCode>{code}</errorCode><errorDescription>no</errorDescription></UPnPError>"),
        );
    }
    http("200 OK", "<ok/>")
}

/// Carries out every HTTP request through `router`; returns the SOAP actions seen.
fn drive(c: &mut UpnpClient, now: Instant, refuse: Option<u32>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(io) = c.poll_io() {
        match io {
            UpnpIo::Search(_) => seen.push("M-SEARCH".to_string()),
            UpnpIo::Http { id, request, .. } => {
                let text = String::from_utf8_lossy(&request).into_owned();
                let action = text
                    .split("SOAPAction: \"")
                    .nth(1)
                    .and_then(|s| s.split('#').nth(1))
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("GET")
                    .to_string();
                let proto = if text.contains("<NewProtocol>UDP<") {
                    " UDP"
                } else if text.contains("<NewProtocol>TCP<") {
                    " TCP"
                } else {
                    ""
                };
                seen.push(format!("{action}{proto}"));
                let _ = c.handle_http(now, id, Some(&router(&request, refuse)));
            }
        }
        assert!(seen.len() < 30, "the client keeps asking: {seen:?}");
    }
    seen
}

fn client() -> UpnpClient {
    UpnpClient::new(UpnpConfig {
        port: 4001,
        local: Ipv4Addr::new(192, 0, 2, 90),
        lifetime: Duration::from_secs(3600),
        ..UpnpConfig::default()
    })
}

#[test]
fn finds_the_router_maps_renews_and_removes() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    assert_eq!(drive(&mut c, t0, None), ["M-SEARCH"]);
    c.handle_ssdp(t0, SSDP).expect("a valid answer");
    assert_eq!(
        drive(&mut c, t0, None),
        [
            "GET",
            "GetExternalIPAddress",
            "AddPortMapping UDP",
            "AddPortMapping TCP"
        ]
    );
    assert_eq!(c.state(), PmpState::Mapped);
    assert_eq!(
        std::iter::from_fn(|| c.poll_event()).collect::<Vec<_>>(),
        [PmpEvent::Mapped {
            external: Ipv4Addr::new(203, 0, 113, 31),
            port: 4001,
            lifetime: Duration::from_secs(3600)
        }]
    );
    // A second answer to the search changes nothing.
    c.handle_ssdp(t0, SSDP).expect("ignored");
    assert!(c.poll_io().is_none());
    let renew = t0 + Duration::from_secs(1800);
    assert_eq!(c.poll_timeout(), Some(renew));
    c.handle_timeout(renew);
    assert_eq!(
        drive(&mut c, renew, None),
        ["AddPortMapping UDP", "AddPortMapping TCP"]
    );
    assert_eq!(c.counters().renewals, 1);
    assert!(c.shutdown(renew));
    assert_eq!(
        drive(&mut c, renew, None),
        ["DeletePortMapping UDP", "DeletePortMapping TCP"]
    );
    assert!(c.is_done());
    assert_eq!(c.poll_event(), Some(PmpEvent::Removed));
}

#[test]
fn a_router_granting_only_permanent_leases_gets_lease_zero() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let _ = drive(&mut c, t0, Some(725));
    c.handle_ssdp(t0, SSDP).expect("a valid answer");
    let seen = drive(&mut c, t0, Some(725));
    assert_eq!(
        seen,
        [
            "GET",
            "GetExternalIPAddress",
            "AddPortMapping UDP",
            "AddPortMapping UDP",
            "AddPortMapping TCP"
        ]
    );
    assert_eq!(c.state(), PmpState::Mapped);
    assert_eq!(c.lifetime(), Some(Duration::ZERO));
    assert_eq!(c.poll_timeout(), None, "a permanent lease is not renewed");
}

#[test]
fn refusals_silence_and_hostile_answers_end_in_unavailable() {
    let t0 = Instant::now();
    // Nobody answers the search: three tries, then unavailable, retried later.
    let mut c = client();
    c.start(t0);
    let mut now = t0;
    while c.state() != PmpState::Unavailable {
        let _ = drive(&mut c, now, None);
        now = c.poll_timeout().expect("a timer");
        c.handle_timeout(now);
    }
    assert_eq!(
        now,
        t0 + Duration::from_secs(3),
        "a second after the third search"
    );
    assert_eq!(c.counters().sent, 3);
    assert!(matches!(c.poll_event(), Some(PmpEvent::Unavailable { .. })));
    // A conflict (718): unavailable, with the reason.
    let mut c = client();
    c.start(t0);
    let _ = drive(&mut c, t0, Some(718));
    c.handle_ssdp(t0, SSDP).expect("valid");
    let _ = drive(&mut c, t0, Some(718));
    assert_eq!(c.state(), PmpState::Unavailable);
    match c.poll_event() {
        Some(PmpEvent::Unavailable { reason }) => assert!(reason.contains("718"), "{reason}"),
        e => panic!("{e:?}"),
    }
    assert!(!c.shutdown(t0), "nothing was mapped");
    // Garbage and answers to nothing asked: counted, ignored.
    let mut c = client();
    c.start(t0);
    let _ = drive(&mut c, t0, None);
    assert!(c.handle_ssdp(t0, b"NOTIFY * HTTP/1.1\r\n\r\n").is_err());
    assert!(c
        .handle_http(t0, 99, Some(b"HTTP/1.1 200 OK\r\n\r\n"))
        .is_ok());
    assert_eq!(c.counters().ignored, 2);
    c.handle_ssdp(t0, SSDP).expect("valid");
    let Some(UpnpIo::Http { id, .. }) = c.poll_io() else {
        panic!("a GET")
    };
    // The description fetch fails: unavailable.
    assert!(c.handle_http(t0, id, None).is_err());
    assert_eq!(c.state(), PmpState::Unavailable);
}

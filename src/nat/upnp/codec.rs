//! UPnP-IGD's messages, the subset a PeerShare node needs (spec: `protocol-spec/nat.md`,
//! section 10): the SSDP search and its answer, the HTTP GET of the device description and
//! the SOAP calls AddPortMapping, DeletePortMapping and GetExternalIPAddress. HTTP responses
//! are parsed with `httparse`; the XML of descriptions and SOAP answers is searched for the
//! few elements we need, never built into a tree. Every parser is total: a typed
//! [`UpnpError`] for any other input, nothing allocated beyond the input's own size.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// The SSDP multicast group and port.
pub const SSDP_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 255, 250), 1900);
/// Most bytes of an HTTP response we read (a description is a few KiB).
pub const MAX_HTTP: usize = 64 * 1024;
/// The services that can map ports, in order of preference.
pub const SERVICES: [&str; 3] = [
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
];
const SEARCH_TARGET: &str = "urn:schemas-upnp-org:device:InternetGatewayDevice:1";

/// Why a router's answer was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpnpError {
    /// Not an HTTP response `httparse` accepts (or cut before its headers ended).
    BadHttp(String),
    /// More bytes than [`MAX_HTTP`].
    TooLarge(usize),
    /// An HTTP status other than 200 without a UPnP error in its body.
    Status(u16),
    /// An SSDP answer without a LOCATION header.
    NoLocation,
    /// A URL this client cannot use (only `http://IPv4[:port]/path`).
    BadUrl(String),
    /// The description names no WAN IP or PPP connection service with a control URL.
    NoService,
    /// The router refused the call: UPnP error code and description (718: conflict, 725:
    /// only permanent leases...).
    Refused {
        /// `errorCode`.
        code: u32,
        /// `errorDescription`.
        text: String,
    },
    /// A SOAP answer without the element it must carry.
    Missing(&'static str),
    /// The body is shorter than its Content-Length.
    Truncated {
        /// Content-Length.
        expected: usize,
        /// Bytes there.
        got: usize,
    },
}

impl fmt::Display for UpnpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpnpError::BadHttp(e) => write!(f, "not an HTTP response: {e}"),
            UpnpError::TooLarge(n) => write!(f, "HTTP response of {n} bytes, more than {MAX_HTTP}"),
            UpnpError::Status(s) => write!(f, "HTTP status {s}"),
            UpnpError::NoLocation => write!(f, "SSDP answer without LOCATION"),
            UpnpError::BadUrl(u) => write!(f, "unusable URL {u:?}"),
            UpnpError::NoService => write!(f, "no WANIPConnection or WANPPPConnection service"),
            UpnpError::Refused { code, text } => write!(f, "UPnP error {code} ({text})"),
            UpnpError::Missing(what) => write!(f, "SOAP answer without {what}"),
            UpnpError::Truncated { expected, got } => {
                write!(f, "HTTP body of {got} bytes, Content-Length {expected}")
            }
        }
    }
}

impl std::error::Error for UpnpError {}

/// An `http://a.b.c.d:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port.
    pub addr: SocketAddrV4,
    /// Path (with query), starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses an absolute URL, or a path relative to `base` (a description's control URL).
    pub fn parse(s: &str, base: Option<&HttpUrl>) -> Result<HttpUrl, UpnpError> {
        let s = s.trim();
        let bad = || UpnpError::BadUrl(s.chars().take(200).collect());
        if let Some(rest) = s.strip_prefix("http://") {
            let (host, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            let (ip, port) = match host.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None => (host, 80),
            };
            let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
            return Ok(HttpUrl {
                addr: SocketAddrV4::new(ip, port),
                path: clean_path(path).ok_or_else(bad)?,
            });
        }
        match base {
            Some(b) if s.starts_with('/') => Ok(HttpUrl {
                addr: b.addr,
                path: clean_path(s).ok_or_else(bad)?,
            }),
            Some(b) if !s.is_empty() && !s.contains("://") => Ok(HttpUrl {
                addr: b.addr,
                path: clean_path(&format!("/{s}")).ok_or_else(bad)?,
            }),
            _ => Err(bad()),
        }
    }
}

/// A path we may put in a request line: printable ASCII without spaces.
fn clean_path(p: &str) -> Option<String> {
    (p.len() <= 1024 && p.bytes().all(|b| b.is_ascii_graphic())).then(|| p.to_string())
}

/// The SSDP search for an Internet gateway device.
pub fn msearch() -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {SEARCH_TARGET}\r\n\r\n"
    )
    .into_bytes()
}

/// The description's URL from an SSDP answer (an HTTP/1.1 200 response over UDP).
pub fn parse_ssdp(b: &[u8]) -> Result<HttpUrl, UpnpError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(b) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(UpnpError::BadHttp("incomplete".into())),
        Err(e) => return Err(UpnpError::BadHttp(e.to_string())),
    }
    if r.code != Some(200) {
        return Err(UpnpError::Status(r.code.unwrap_or(0)));
    }
    let loc = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("location"))
        .ok_or(UpnpError::NoLocation)?;
    let loc = std::str::from_utf8(loc.value).map_err(|_| UpnpError::NoLocation)?;
    HttpUrl::parse(loc, None)
}

/// An HTTP/1.1 GET of `url` (the connection closes after the answer).
pub fn http_get(url: &HttpUrl) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        url.path, url.addr
    )
    .into_bytes()
}

/// A SOAP call of `action` of `service` at `url` with arguments `args` (already plain
/// text: numbers, addresses and our own description; escaped anyway).
pub fn soap(url: &HttpUrl, service: &str, action: &str, args: &[(&str, String)]) -> Vec<u8> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{service}\">"
    );
    for (k, v) in args {
        body.push_str(&format!("<{k}>{}</{k}>", escape(v)));
    }
    body.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSOAPAction: \"{service}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.addr,
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body.as_bytes());
    req
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An HTTP response read to the end of its connection: status and body (by
/// Content-Length when given, else everything after the headers).
pub fn parse_http(b: &[u8]) -> Result<(u16, &[u8]), UpnpError> {
    if b.len() > MAX_HTTP {
        return Err(UpnpError::TooLarge(b.len()));
    }
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut r = httparse::Response::new(&mut headers);
    let start = match r.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err(UpnpError::BadHttp("incomplete".into())),
        Err(e) => return Err(UpnpError::BadHttp(e.to_string())),
    };
    let code = r.code.unwrap_or(0);
    let body = &b[start..];
    let len = r
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = match len {
        Some(n) if n <= body.len() => &body[..n],
        Some(n) => {
            return Err(UpnpError::Truncated {
                expected: n,
                got: body.len(),
            })
        }
        None => body,
    };
    Ok((code, body))
}

/// The text of the first element named `name` (any namespace prefix) inside `xml`, and
/// where it ends.
fn element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, usize)> {
    let mut from = 0;
    while let Some(i) = xml.get(from..)?.find('<') {
        let at = from + i + 1;
        let rest = xml.get(at..)?;
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let local = tag.split_whitespace().next().unwrap_or("");
        let local = local.rsplit(':').next().unwrap_or(local);
        if local == name && !tag.starts_with('/') && !tag.ends_with('/') {
            let body_at = at + end + 1;
            let body = xml.get(body_at..)?;
            let close = body.find("</")?;
            return Some((body[..close].trim(), body_at + close));
        }
        from = at;
    }
    None
}

/// The control URL of the first port-mapping service of a device description, resolved
/// against the description's URL; and that service's type.
pub fn control_url(desc: &[u8], base: &HttpUrl) -> Result<(HttpUrl, &'static str), UpnpError> {
    let xml = String::from_utf8_lossy(desc);
    let base = match element(&xml, "URLBase") {
        Some((u, _)) if !u.is_empty() => HttpUrl::parse(u, None).unwrap_or_else(|_| base.clone()),
        _ => base.clone(),
    };
    for service in SERVICES {
        let Some(i) = xml.find(&format!(">{service}<")) else {
            continue;
        };
        // The control URL of the same <service> element: after its type, before its end.
        let rest = &xml[i..];
        let end = rest.find("</service>").unwrap_or(rest.len());
        if let Some((u, _)) = element(&rest[..end], "controlURL") {
            return Ok((HttpUrl::parse(u, Some(&base))?, service));
        }
    }
    Err(UpnpError::NoService)
}

/// Checks a SOAP answer: 200 gives the text of element `want` (if asked for), a UPnP
/// fault gives [`UpnpError::Refused`].
pub fn soap_result(
    status: u16,
    body: &[u8],
    want: Option<&'static str>,
) -> Result<Option<String>, UpnpError> {
    let xml = String::from_utf8_lossy(body);
    if status != 200 {
        if let Some((code, _)) = element(&xml, "errorCode") {
            let text = element(&xml, "errorDescription")
                .map(|(t, _)| t.chars().take(200).collect())
                .unwrap_or_default();
            return Err(UpnpError::Refused {
                code: code.parse().unwrap_or(0),
                text,
            });
        }
        return Err(UpnpError::Status(status));
    }
    match want {
        None => Ok(None),
        Some(name) => element(&xml, name)
            .map(|(t, _)| Some(t.chars().take(200).collect()))
            .ok_or(UpnpError::Missing(name)),
    }
}

#[cfg(test)]
mod upnp_codec_tests {
    use super::*;

    // miniupnpd 2.3.1's answers in the lab (trimmed where long; the XML shape is its own).
    const SSDP: &str = "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:00000000-0000-4000-8000-000000000001::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.0.2.89:5000/rootDesc.xml\r\n\r\n";
    const DESC: &str = "<?xml version=\"1.0\"?><root xmlns=\"urn:schemas-upnp-org:device-1-0\"><device><deviceList><device><deviceList><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service></serviceList></device></deviceList></device></deviceList></device></root>";
    const FAULT: &str = "<?xml version=\"1.0\"?><s:Envelope><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>";

    #[test]
    fn discovery_description_and_calls() {
        let loc = parse_ssdp(SSDP.as_bytes()).expect("valid");
        assert_eq!(loc.addr, "192.0.2.89:5000".parse().unwrap());
        assert_eq!(loc.path, "/rootDesc.xml");
        let (ctl, service) = control_url(DESC.as_bytes(), &loc).expect("a service");
        assert_eq!(ctl.path, "/ctl/IPConn");
        assert_eq!(ctl.addr, loc.addr);
        assert_eq!(service, SERVICES[1]);
        let req = soap(
            &ctl,
            service,
            "AddPortMapping",
            &[
                ("NewExternalPort", "4001".into()),
                ("NewProtocol", "UDP".into()),
            ],
        );
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /ctl/IPConn HTTP/1.1\r\nHost: 192.0.2.89:5000\r\n"));
        assert!(text.contains(&format!("SOAPAction: \"{service}#AddPortMapping\"")));
        assert!(
            text.contains("<NewExternalPort>4001</NewExternalPort><NewProtocol>UDP</NewProtocol>")
        );
        let body_len = text.split("\r\n\r\n").nth(1).unwrap().len();
        assert!(text.contains(&format!("Content-Length: {body_len}\r\n")));
        let ok = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 95\r\n\r\n{:<95}",
            "<u:GetExternalIPAddressResponse><NewExternalIPAddress>203.0.113.31</NewExternalIPAddress>"
        );
        let (code, body) = parse_http(ok.as_bytes()).expect("valid");
        assert_eq!(
            soap_result(code, body, Some("NewExternalIPAddress")),
            Ok(Some("203.0.113.31".into()))
        );
        let fault = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{FAULT}",
            FAULT.len()
        );
        let (code, body) = parse_http(fault.as_bytes()).expect("valid");
        assert_eq!(
            soap_result(code, body, None),
            Err(UpnpError::Refused {
                code: 718,
                text: "ConflictInMappingEntry".into()
            })
        );
    }

    #[test]
    fn hostile_answers_get_typed_errors() {
        assert!(matches!(parse_ssdp(b"garbage"), Err(UpnpError::BadHttp(_))));
        assert_eq!(
            parse_ssdp(b"HTTP/1.1 200 OK\r\nST: x\r\n\r\n"),
            Err(UpnpError::NoLocation)
        );
        assert!(matches!(
            parse_ssdp(b"HTTP/1.1 200 OK\r\nLOCATION: https://192.0.2.1/x\r\n\r\n"),
            Err(UpnpError::BadUrl(_))
        ));
        assert!(matches!(
            parse_ssdp(b"HTTP/1.1 200 OK\r\nLOCATION: http://router.local/x\r\n\r\n"),
            Err(UpnpError::BadUrl(_))
        ));
        assert!(matches!(
            HttpUrl::parse("http://192.0.2.1:5000/a b", None),
            Err(UpnpError::BadUrl(_))
        ));
        let base = HttpUrl::parse("http://192.0.2.1:5000/d.xml", None).unwrap();
        assert_eq!(
            control_url(
                b"<root><service><serviceType>urn:x</serviceType></service></root>",
                &base
            ),
            Err(UpnpError::NoService)
        );
        assert_eq!(
            parse_http(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
            Err(UpnpError::Truncated {
                expected: 10,
                got: 3
            })
        );
        assert_eq!(
            parse_http(&vec![b'a'; MAX_HTTP + 1]),
            Err(UpnpError::TooLarge(MAX_HTTP + 1))
        );
        assert_eq!(soap_result(404, b"", None), Err(UpnpError::Status(404)));
        assert_eq!(
            soap_result(200, b"<x/>", Some("NewExternalIPAddress")),
            Err(UpnpError::Missing("NewExternalIPAddress"))
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_are_total(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let base = HttpUrl::parse("http://192.0.2.1:5000/d.xml", None).unwrap();
            let _ = parse_ssdp(&bytes);
            let _ = control_url(&bytes, &base);
            if let Ok((code, body)) = parse_http(&bytes) {
                let _ = soap_result(code, body, Some("NewExternalIPAddress"));
            }
            let _ = HttpUrl::parse(&String::from_utf8_lossy(&bytes), Some(&base));
        }
    }
}

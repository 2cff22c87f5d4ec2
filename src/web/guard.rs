//! Who may use the node's web side (http.md section 4): a web page the user happens to visit
//! must not be able to drive the node through the user's browser.
//!
//! - **Host** (DNS rebinding): a page on `evil.example` can make its name resolve to
//!   127.0.0.1; the browser then sends `Host: evil.example:8003`. Only an IP literal or
//!   `localhost` with the node's own HTTP port is accepted, so no name an attacker controls
//!   can reach the node.
//! - **Origin** (CSRF): a page elsewhere can make the browser send a request to the node, with
//!   its own `Origin`. A request with an `Origin` is accepted only if that origin is the
//!   node's own (`http://`, or `https://` over TLS, and a host accepted above); `Sec-Fetch-Site: cross-site` is refused
//!   too. Requests without either header come from programs (curl, Prometheus), not pages.
//! - **Token**: a client outside loopback must send the API's token (api.md section 1), as
//!   `Authorization: Bearer TOKEN` or `?token=TOKEN` (an `<audio>` element or `EventSource`
//!   cannot set headers).

use std::net::{IpAddr, SocketAddr};

use sha2::{Digest, Sha256};

use super::request::Request;

/// Why a request was refused: the reply's status and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 403 or 401.
    pub status: u16,
    /// For the reply body.
    pub message: String,
}

fn forbidden(message: String) -> Refusal {
    Refusal {
        status: 403,
        message,
    }
}

/// Whether `host` (a `Host` header or an origin's host part) names this node: an IP literal
/// or `localhost`, with `port` (or no port when `port` is 80).
pub fn host_is_ours(host: &str, port: u16) -> bool {
    let (name, p) = match host.rsplit_once(':') {
        // `[::1]:8003`, `127.0.0.1:8003`; a bare `[::1]` has its last colon inside brackets.
        Some((n, p)) if !p.contains(']') => (n, p.parse::<u16>().ok()),
        _ => (host, Some(80)),
    };
    if p != Some(port) {
        return false;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || (bare.parse::<IpAddr>().is_ok() && (bare == name || name.starts_with('[')))
}

/// Checks `req` from `peer` against a node whose HTTP side listens on `local`, with `token`
/// required of clients outside loopback (if set).
pub fn check(
    req: &Request,
    peer: SocketAddr,
    local: SocketAddr,
    token: Option<&str>,
) -> Result<(), Refusal> {
    let port = local.port();
    match req.host.as_deref() {
        None => return Err(forbidden("a Host header is required".into())),
        Some(h) if !host_is_ours(h, port) => {
            return Err(forbidden(format!(
                "Host {h:?} is not this node (use http://127.0.0.1:{port}/ or \
                 http://localhost:{port}/)"
            )))
        }
        Some(_) => {}
    }
    if let Some(o) = req.origin.as_deref() {
        // The scheme of the connection itself: a page the node served over TLS (to a
        // browser on another machine) has an https:// origin, one served in clear http://.
        let scheme = if req.over_tls { "https://" } else { "http://" };
        let ours = o
            .strip_prefix(scheme)
            .is_some_and(|h| host_is_ours(h, port));
        if !ours {
            return Err(forbidden(format!(
                "Origin {o:?} is not this node: pages of other sites may not use it"
            )));
        }
    }
    if req
        .fetch_site
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("cross-site"))
    {
        return Err(forbidden(
            "a cross-site request (Sec-Fetch-Site): pages of other sites may not use this node"
                .into(),
        ));
    }
    // The dashboard's own files hold no data of the node: a browser beyond loopback loads
    // them without the token, and the page then sends the token with its requests.
    let public = super::assets::find(&req.path).is_some();
    let needed = !public && crate::api::auth::required_for(peer.ip());
    if let Some(expected) = token.filter(|_| needed) {
        let given = req
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .or_else(|| req.query_param("token"));
        let ok = given.is_some_and(|g| Sha256::digest(g) == Sha256::digest(expected));
        if !ok {
            return Err(Refusal {
                status: 401,
                message: "unauthorized: clients outside loopback must send the API token \
                          (Authorization: Bearer TOKEN, or ?token=TOKEN)"
                    .into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, origin: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            host: Some(host.into()),
            origin: origin.map(str::to_string),
            ..Request::default()
        }
    }

    #[test]
    fn only_the_nodes_own_host_and_origin_pass() {
        let local: SocketAddr = "127.0.0.1:8003".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for ok in [
            "127.0.0.1:8003",
            "localhost:8003",
            "[::1]:8003",
            "192.0.2.7:8003",
        ] {
            assert_eq!(check(&req(ok, None), lo, local, None), Ok(()), "{ok}");
            let origin = format!("http://{ok}");
            assert_eq!(check(&req(ok, Some(&origin)), lo, local, None), Ok(()));
        }
        for bad in [
            "evil.example:8003",
            "127.0.0.1.nip.io:8003",
            "127.0.0.1:8004",
            "127.0.0.1",
            "localhost",
            "",
        ] {
            let r = check(&req(bad, None), lo, local, None).unwrap_err();
            assert_eq!(r.status, 403, "{bad}");
        }
        for bad in [
            "http://evil.example",
            "null",
            "https://127.0.0.1:8003",
            "http://127.0.0.1:9999",
        ] {
            let r = check(&req("127.0.0.1:8003", Some(bad)), lo, local, None).unwrap_err();
            assert!(r.message.contains("Origin"), "{bad}: {r:?}");
        }
        let mut cross = req("127.0.0.1:8003", None);
        cross.fetch_site = Some("cross-site".into());
        assert_eq!(check(&cross, lo, local, None).unwrap_err().status, 403);
        let mut no_host = req("", None);
        no_host.host = None;
        assert_eq!(check(&no_host, lo, local, None).unwrap_err().status, 403);
        // Over TLS the node's own pages are https://, and http:// is another origin.
        let mut tls = req("127.0.0.1:8003", Some("https://127.0.0.1:8003"));
        tls.over_tls = true;
        assert_eq!(check(&tls, lo, local, None), Ok(()));
        tls.origin = Some("http://127.0.0.1:8003".into());
        assert_eq!(check(&tls, lo, local, None).unwrap_err().status, 403);
    }

    #[test]
    fn the_token_is_needed_outside_loopback_only() {
        let local: SocketAddr = "0.0.0.0:8003".parse().unwrap();
        let far: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut r = req("192.0.2.1:8003", None);
        r.path = "/metrics".into();
        assert_eq!(check(&r, lo, local, Some("s3cret")), Ok(()));
        assert_eq!(
            check(&r, far, local, Some("s3cret")).unwrap_err().status,
            401
        );
        let mut bearer = r.clone();
        bearer.authorization = Some("Bearer s3cret".into());
        assert_eq!(check(&bearer, far, local, Some("s3cret")), Ok(()));
        bearer.authorization = Some("Bearer nope".into());
        assert_eq!(
            check(&bearer, far, local, Some("s3cret"))
                .unwrap_err()
                .status,
            401
        );
        let mut query = r.clone();
        query.query = Some("token=s3cret".into());
        assert_eq!(check(&query, far, local, Some("s3cret")), Ok(()));
        // The page's own files are public; the node's data is not.
        let mut page = r.clone();
        page.path = "/app.js".into();
        assert_eq!(check(&page, far, local, Some("s3cret")), Ok(()));
        page.path = "/metrics".into();
        assert_eq!(
            check(&page, far, local, Some("s3cret")).unwrap_err().status,
            401
        );
    }
}

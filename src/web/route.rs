//! What each request asks for (http.md section 2): a page of the dashboard, the metrics, or a
//! JSON API request to run.

use super::assets;
use super::request::Request;
use super::response;
use crate::id::Id;

/// What to do with a request that passed the guard.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes.
    Respond(Vec<u8>),
    /// Render `/metrics` from the latest view.
    Metrics,
    /// `/lookups`: the last DHT lookups as JSON (http.md section 7).
    Lookups,
    /// `/events`: server-sent events, the node's status each second (http.md section 7).
    Events,
    /// Run this JSON API request (api.md section 5) and send its reply as the body.
    Api(Vec<u8>),
    /// Stream bytes of a content (section 6): `path` is a folder's file (empty: none named;
    /// for a single file only its name, which gives the type).
    Stream {
        /// The content.
        content: Id,
        /// The file's path, percent-decoded.
        path: String,
        /// The `Range` header.
        range: Option<String>,
    },
}

/// `%XX` sequences decoded; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `/content/<id>[/<path>]`.
fn stream(req: &Request, rest: &str) -> Action {
    let (id, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(content) = Id::from_hex(id) else {
        return Action::Respond(response::text(404, "not a content ID (64 hex digits)"));
    };
    let Some(path) = percent_decode(path) else {
        return Action::Respond(response::text(400, "malformed %-escape in the path"));
    };
    Action::Stream {
        content,
        path,
        range: req.range.clone(),
    }
}

/// Routes `req`.
pub fn route(req: &Request) -> Action {
    let get = req.method == "GET";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => Action::Metrics,
        ("GET", "/events") => Action::Events,
        ("GET", "/lookups") => Action::Lookups,
        ("GET", p) if p.starts_with("/content/") => {
            stream(req, p.strip_prefix("/content/").unwrap_or(""))
        }
        ("POST", "/api") => {
            if req.body.first() != Some(&b'{') {
                return Action::Respond(response::text(
                    400,
                    "the body of POST /api is one JSON API request: {\"type\": ..., \"payload\": {...}}",
                ));
            }
            Action::Api(req.body.clone())
        }
        (_, path) => match assets::find(path) {
            Some((ctype, body)) if get => Action::Respond(response::page(ctype, body)),
            Some(_) => Action::Respond(response::text(405, "method not allowed")),
            None if path == "/metrics" || path == "/api" => {
                Action::Respond(response::text(405, "method not allowed"))
            }
            None => Action::Respond(response::text(404, &format!("no page {path}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            body: body.to_vec(),
            ..Request::default()
        }
    }

    fn status(a: Action) -> u16 {
        let Action::Respond(b) = a else { return 0 };
        String::from_utf8_lossy(&b)[9..12].parse().unwrap()
    }

    #[test]
    fn routes() {
        assert_eq!(route(&req("GET", "/metrics", b"")), Action::Metrics);
        assert_eq!(
            route(&req("POST", "/api", b"{}")),
            Action::Api(b"{}".to_vec())
        );
        assert_eq!(status(route(&req("POST", "/api", b"x"))), 400);
        assert_eq!(status(route(&req("GET", "/", b""))), 200);
        assert_eq!(status(route(&req("GET", "/nope", b""))), 404);
        assert_eq!(status(route(&req("POST", "/", b""))), 405);
        assert_eq!(status(route(&req("DELETE", "/metrics", b""))), 405);
        let id = "ab".repeat(32);
        let Action::Stream { content, path, .. } =
            route(&req("GET", &format!("/content/{id}/Kicks/k%201.wav"), b""))
        else {
            panic!("not a stream")
        };
        assert_eq!(
            (content.to_hex(), path.as_str()),
            (id.clone(), "Kicks/k 1.wav")
        );
        assert_eq!(status(route(&req("GET", "/content/zz", b""))), 404);
        let bad = format!("/content/{id}/a%2");
        assert_eq!(status(route(&req("GET", &bad, b""))), 400);
    }
}

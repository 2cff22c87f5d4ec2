//! What each request asks for (http.md section 2): a page of the dashboard, the metrics, or a
//! JSON API request to run.

use super::assets;
use super::request::Request;
use super::response;

/// What to do with a request that passed the guard.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes.
    Respond(Vec<u8>),
    /// Render `/metrics` from the latest view.
    Metrics,
    /// Run this JSON API request (api.md section 5) and send its reply as the body.
    Api(Vec<u8>),
}

/// Routes `req`.
pub fn route(req: &Request) -> Action {
    let get = req.method == "GET";
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/metrics") => Action::Metrics,
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
    }
}

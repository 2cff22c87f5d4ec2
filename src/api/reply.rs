//! API replies: one compact JSON object followed by exactly one `\n`.
//!
//! Every reply carries `"status": "success"` or `"status": "error"`; errors also carry a
//! human-readable `"message"`. The trailing newline lets newline-delimited clients read one
//! line per request, while EchoChain clients that parse a single read still see one object.

use serde_json::{Map, Value};

/// Sent if a reply cannot be encoded, which `serde_json` does not do for a `Value`; it
/// exists so that building a reply never panics.
const ENCODE_FAILURE: &[u8] =
    b"{\"message\":\"internal error: the reply could not be encoded\",\"status\":\"error\"}\n";

/// A success reply carrying `fields`. `"status"` is always `"success"`: a `status` key in
/// `fields` is overwritten, since every reply's envelope status must be success or error.
/// Put a short `"message"` in `fields` if the reply should have one.
pub fn success(mut fields: Map<String, Value>) -> Vec<u8> {
    fields.insert("status".to_owned(), Value::from("success"));
    encode(fields)
}

/// [`success`] with one more field, `key`: the list of `ids` as hex strings, written
/// straight into the reply's bytes. A `status` of 100,000 provided IDs built as JSON values
/// held about 10 MiB of strings at once beside the 6.6 MB reply (issue 21); the bytes are
/// the same.
pub fn success_with_ids<'a>(
    mut fields: Map<String, Value>,
    key: &str,
    mut ids: impl ExactSizeIterator<Item = &'a crate::id::Id>,
) -> Vec<u8> {
    fields.insert("status".to_owned(), Value::from("success"));
    // A placeholder gives `key` its place in the map's order; its value is written below.
    fields.insert(key.to_owned(), Value::Null);
    let mut out = Vec::with_capacity(256 + ids.len() * 67);
    out.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let written = serde_json::to_writer(&mut out, k).and_then(|()| {
            out.push(b':');
            if k != key {
                return serde_json::to_writer(&mut out, v);
            }
            out.push(b'[');
            let mut hex = [0u8; 64];
            for (j, id) in ids.by_ref().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                hex::encode_to_slice(id.0, &mut hex)
                    .map_err(<serde_json::Error as serde::ser::Error>::custom)?;
                out.extend_from_slice(&hex);
                out.push(b'"');
            }
            out.push(b']');
            Ok(())
        });
        if let Err(e) = written {
            log::error!("cannot encode an API reply: {e}");
            return ENCODE_FAILURE.to_vec();
        }
    }
    out.extend_from_slice(b"}\n");
    out
}

/// An error reply: `{"message": message, "status": "error"}`.
pub fn error(message: &str) -> Vec<u8> {
    let mut fields = Map::new();
    fields.insert("status".to_owned(), Value::from("error"));
    fields.insert("message".to_owned(), Value::from(message));
    encode(fields)
}

/// An error reply with extra fields (such as `verified: false`): `status` is `"error"` and
/// `message` is `message`, whatever `fields` held under those keys.
pub fn error_with(message: &str, mut fields: Map<String, Value>) -> Vec<u8> {
    fields.insert("status".to_owned(), Value::from("error"));
    fields.insert("message".to_owned(), Value::from(message));
    encode(fields)
}

/// The answer to a connection that opened with an HTTP request line (see
/// `framing::Frame::Http`): `400 Bad Request` with the usual JSON error as its body, so a
/// browser or curl shows why, and `Connection: close`. It has no CORS header, so a web page
/// that made the request cannot even read this answer.
pub fn http_refusal(message: &str) -> Vec<u8> {
    let body = error(message);
    let mut out = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

fn encode(fields: Map<String, Value>) -> Vec<u8> {
    match serde_json::to_vec(&Value::Object(fields)) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            bytes
        }
        Err(e) => {
            log::error!("cannot encode an API reply: {e}");
            ENCODE_FAILURE.to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(bytes: &[u8]) -> Value {
        assert_eq!(bytes.last(), Some(&b'\n'));
        let body = &bytes[..bytes.len() - 1];
        assert!(!body.contains(&b'\n'), "reply must be one line");
        serde_json::from_slice(body).unwrap()
    }

    #[test]
    fn success_with_fields() {
        let mut m = Map::new();
        m.insert("file_hash".into(), json!("ab"));
        m.insert("status".into(), json!("bogus"));
        let v = decode(&success(m));
        assert_eq!(v, json!({"status": "success", "file_hash": "ab"}));
    }

    #[test]
    fn ids_written_straight_are_the_bytes_of_the_value_form() {
        use crate::id::Id;
        let ids: Vec<Id> = (0..3u8).map(|i| Id::hash_of(&[i])).collect();
        for n in [0, 1, 3] {
            let mut m = Map::new();
            m.insert("node_id".into(), json!("ab\"c"));
            m.insert("running".into(), json!({"x": [1, 2]}));
            m.insert("api".into(), Value::Null);
            let mut want = m.clone();
            want.insert(
                "provided".into(),
                json!(ids[..n].iter().map(Id::to_hex).collect::<Vec<_>>()),
            );
            let got = success_with_ids(m, "provided", ids[..n].iter());
            assert_eq!(got, success(want), "{n} ids");
        }
        assert_eq!(
            success_with_ids(Map::new(), "content_hashes", [].iter()),
            b"{\"content_hashes\":[],\"status\":\"success\"}\n"
        );
    }

    #[test]
    fn empty_success_is_small() {
        assert_eq!(success(Map::new()), b"{\"status\":\"success\"}\n");
    }

    #[test]
    fn error_has_message() {
        let bytes = error("Unknown command");
        assert_eq!(
            decode(&bytes),
            json!({"status": "error", "message": "Unknown command"})
        );
        // Newlines and quotes in a message are escaped, keeping the reply on one line.
        let v = decode(&error("a \"b\"\nc"));
        assert_eq!(v["message"], "a \"b\"\nc");
    }

    #[test]
    fn error_with_fields() {
        let mut m = Map::new();
        m.insert("verified".into(), json!(false));
        m.insert("status".into(), json!("success"));
        let v = decode(&error_with("No valid registration", m));
        assert_eq!(
            v,
            json!({"status": "error", "message": "No valid registration", "verified": false})
        );
    }

    #[test]
    fn http_refusal_is_a_complete_response() {
        let r = http_refusal("not HTTP");
        let text = String::from_utf8(r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(
            !head.to_ascii_lowercase().contains("access-control"),
            "{head}"
        );
        assert_eq!(decode(body.as_bytes())["message"], "not HTTP");
    }

    #[test]
    fn fallback_is_valid() {
        let v = decode(ENCODE_FAILURE);
        assert_eq!(v["status"], "error");
    }
}

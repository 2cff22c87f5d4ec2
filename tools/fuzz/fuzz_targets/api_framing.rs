//! The local API's connection framer (src/api/framing.rs) fed arbitrary bytes in
//! fuzzer-chosen pieces, every request it frames parsed (src/api/request.rs) and checked
//! for a token (src/api/auth.rs), and every frame answered through the output buffer.
//! Invariants: never a panic; the frames do not depend on how the bytes were split (but for
//! the reply form of an HTTP method cut by the first read, as documented); a
//! request frame is one `{...}` of at most MAX_REQUEST_BYTES; nothing is framed after a
//! refusal; the output is exactly the replies, in order; a refused or closed connection
//! wants to close once everything is written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use peershare::api::framing::{ApiConnection, Frame, MAX_REQUEST_BYTES};
use peershare::api::request::parse_request;
use peershare::api::{auth, reply};
use peershare_fuzz::Steps;

#[global_allocator]
static ALLOC: peershare_fuzz::CappedAlloc = peershare_fuzz::CappedAlloc;

fn answer(frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::Request(bytes) => {
            assert!(bytes.len() <= MAX_REQUEST_BYTES, "request over the limit");
            assert_eq!(bytes.first(), Some(&b'{'));
            assert!(
                matches!(bytes.last(), Some(b'}')),
                "a request ends with its `}}`"
            );
            let _ = auth::check(bytes, "secret");
            match parse_request(bytes) {
                Ok(req) => reply::error(req.command()),
                Err(e) => reply::error(&e.message),
            }
        }
        Frame::Malformed { reason } => reply::error(reason),
        Frame::Http { reason } => reply::http_refusal(reason),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let mut sizes = Steps::new(seed);

    let mut whole = ApiConnection::new();
    let mut want = whole.on_bytes(input);
    want.extend(whole.on_eof());

    let mut conn = ApiConnection::new();
    let mut got = Vec::new();
    let mut expected_out = Vec::new();
    let mut written = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(sizes.step().min(rest.len()));
        rest = tail;
        let frames = conn.on_bytes(piece);
        for f in &frames {
            let r = answer(f);
            conn.queue_reply(&r);
            expected_out.extend_from_slice(&r);
        }
        got.extend(frames);
        // Write part of the output, as a slow client's socket would take it.
        let n = sizes.step().min(conn.pending_output().len());
        written.extend_from_slice(&conn.pending_output()[..n]);
        conn.consume_output(n);
    }
    let eof = conn.on_eof();
    if let Some(f) = &eof {
        assert!(matches!(f, Frame::Malformed { .. }));
        let r = answer(f);
        conn.queue_reply(&r);
        expected_out.extend_from_slice(&r);
    }
    got.extend(eof);
    // The frames do not depend on the split, with one documented exception: an HTTP method
    // cut by the first read is refused at once, in JSON (`Malformed`) rather than as `Http`
    // (framing.rs refuses at the first byte rather than wait for a whole method token).
    assert_eq!(
        got.len(),
        want.len(),
        "the frames depend on how the input was split"
    );
    for (g, w) in got.iter().zip(&want) {
        match (g, w) {
            (Frame::Malformed { .. }, Frame::Http { .. }) => {}
            _ => assert!(g == w, "the frames depend on how the input was split"),
        }
    }

    if let Some(i) = got.iter().position(|f| !matches!(f, Frame::Request(_))) {
        assert_eq!(i + 1, got.len(), "a frame came after a refusal");
    }

    written.extend_from_slice(conn.pending_output());
    let n = conn.pending_output().len();
    conn.consume_output(n);
    assert!(
        written == expected_out,
        "the output is not the replies in order"
    );
    assert!(
        conn.wants_close(),
        "a closed connection with nothing pending must close"
    );
    assert!(!conn.wants_read());
});

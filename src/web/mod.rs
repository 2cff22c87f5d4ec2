//! The node's web side as sans-IO pieces (protocol-spec/http.md): parsing a request with
//! limits ([`request`]), refusing requests of other sites ([`guard`]), choosing what to do
//! ([`route`]), the metrics page ([`metrics`]), the last DHT lookups hop by hop ([`lookups`]), responses ([`response`]) and the embedded
//! dashboard ([`assets`]). The sockets are `net::http_server`'s.

pub mod assets;
pub mod guard;
pub mod lookups;
pub mod metrics;
pub mod range;
pub mod request;
pub mod response;
pub mod route;

//! What the fuzz targets (`fuzz/`) reach of the server, exposed on purpose
//! and hidden from the docs (as rustls does): the stats endpoint's request
//! head parser. The PSRT decoders are fuzzed in `psrt-protocol` directly.

pub use super::http::head::{
    Auth, ClientQuery, Head, MAX_HEAD, Route, SortKey, TopicQuery, decode_base64, parse_head,
};

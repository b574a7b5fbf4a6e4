//! The stats endpoint's request head: parsed with httparse within the size
//! limits, into a route and credentials, without touching server state (the
//! fuzz target `http_head` drives [`parse_head`]).

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The HTML page.
    Page,
    /// JSON counters.
    Status,
    /// Prometheus metrics.
    Metrics,
    /// Liveness.
    Health,
    /// JSON: the busiest topics (`?sort=messages|rate&limit=N`).
    Topics(TopicQuery),
    /// JSON: connected clients (`?sort=KEY&limit=N`).
    Clients(ClientQuery),
    /// JSON: the last two minutes of rates and gauges (the page's charts).
    History,
}

/// Rows returned by `/topics` without `limit`.
pub(crate) const TOPICS_LIMIT: u32 = 20;
/// Rows returned by `/clients` without `limit`.
pub(crate) const CLIENTS_LIMIT: u32 = 100;
/// Most rows one `/clients` request returns.
pub(crate) const CLIENTS_MAX: u32 = 10_000;

/// What `/topics` returns: the first `limit` tracked topics by messages
/// (the default) or by their current rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicQuery {
    /// Order by messages per second now rather than by messages.
    pub by_rate: bool,
    /// Rows.
    pub limit: u32,
}

/// What `/clients` returns: the first `limit` clients by `sort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientQuery {
    /// The order.
    pub sort: SortKey,
    /// Rows, at most [`CLIENTS_MAX`].
    pub limit: u32,
}

/// Orders of `/clients`: the largest first, except `login` (A to Z) and
/// `since` (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Bytes queued for the client's data socket (the default).
    Queued,
    /// Messages written to it.
    Sent,
    /// Messages dropped with its queues.
    Dropped,
    /// Subscriptions.
    Subscriptions,
    /// Connected longest.
    Since,
    /// Login name.
    Login,
}

impl SortKey {
    /// The query-string word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Dropped => "dropped",
            Self::Subscriptions => "subscriptions",
            Self::Since => "since",
            Self::Login => "login",
        }
    }

    fn parse(word: Option<&str>) -> Option<Self> {
        let Some(word) = word else {
            return Some(Self::Queued);
        };
        [
            Self::Queued,
            Self::Sent,
            Self::Dropped,
            Self::Subscriptions,
            Self::Since,
            Self::Login,
        ]
        .into_iter()
        .find(|k| k.as_str() == word)
    }
}

/// `sort` and `limit` of a query string (other keys are ignored).
fn parse_query(query: &str) -> Result<(Option<&str>, Option<u32>), &'static str> {
    let (mut sort, mut limit) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sort" => sort = Some(value),
            "limit" => limit = Some(value.parse().map_err(|_| "limit is not a number\n")?),
            _ => {}
        }
    }
    Ok((sort, limit))
}

/// The route of a table path with its query string.
fn table_route(path: &str, query: &str) -> Result<Route, &'static str> {
    let (sort, limit) = parse_query(query)?;
    if path == "/topics" {
        let by_rate = match sort {
            None | Some("messages") => false,
            Some("rate") => true,
            Some(_) => return Err("unknown sort key\n"),
        };
        return Ok(Route::Topics(TopicQuery {
            by_rate,
            limit: limit.unwrap_or(TOPICS_LIMIT),
        }));
    }
    Ok(Route::Clients(ClientQuery {
        sort: SortKey::parse(sort).ok_or("unknown sort key\n")?,
        limit: limit.unwrap_or(CLIENTS_LIMIT).min(CLIENTS_MAX),
    }))
}

/// Decodes standard base64 (with or without padding).
pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 {
        return None;
    }
    for c in trimmed.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Parses `Authorization: Basic …` into (user, password). `Ok(None)`: no
/// Basic credentials (anonymous); `Err`: a malformed header (400).
fn basic_credentials(value: &[u8]) -> Result<Option<(String, String)>, &'static str> {
    let value = std::str::from_utf8(value).map_err(|_| "Unable to decode authorization header")?;
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let encoded = parts.next().map(str::trim).unwrap_or_default();
    if encoded.is_empty() {
        return Err("Invalid authorization header");
    }
    let decoded = decode_base64(encoded).ok_or("Unable to decode credentials")?;
    let text = String::from_utf8(decoded).map_err(|_| "Unable to parse credentials string")?;
    let Some((user, password)) = text.split_once(':') else {
        return Err("Basic authorization error: password not specified");
    };
    Ok(Some((user.to_string(), password.to_string())))
}

/// What a request head asks for, parsed without touching server state (the
/// fuzz target `http_head` drives this).
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// Not complete yet (and below the size limit).
    Incomplete,
    /// Answered without looking further: (status line, body).
    Reject(&'static str, &'static str),
    /// A GET for a known path.
    Get {
        /// Bytes of the head.
        len: usize,
        /// Which page.
        route: Route,
        /// The `Authorization` header, if any.
        auth: Auth,
    },
}

/// Credentials of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Auth {
    /// No Basic credentials: anonymous.
    Anonymous,
    /// Basic credentials.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A malformed `Authorization` header (400 with this text).
    Malformed(&'static str),
}

/// Parses a request head with httparse, within the size limits.
pub fn parse_head(data: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(data) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if data.len() < MAX_HEAD => return Head::Incomplete,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return Head::Reject("431 Request Header Fields Too Large", "");
        }
        Err(_) => return Head::Reject("400 Bad Request", "malformed request\n"),
    };
    if req.method != Some("GET") {
        return Head::Reject("405 Method Not Allowed", "");
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let route = match path {
        "/" | "/index.html" => Route::Page,
        "/status" => Route::Status,
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
        "/history" => Route::History,
        "/topics" | "/clients" => match table_route(path, query) {
            Ok(route) => route,
            Err(message) => return Head::Reject("400 Bad Request", message),
        },
        _ => return Head::Reject("404 Not Found", ""),
    };
    let auth = match req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .map(|h| basic_credentials(h.value))
    {
        None | Some(Ok(None)) => Auth::Anonymous,
        Some(Ok(Some((user, password)))) => Auth::Basic { user, password },
        Some(Err(message)) => Auth::Malformed(message),
    };
    Head::Get { len, route, auth }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        assert_eq!(parse_head(b"GET /sta"), Head::Incomplete);
        assert_eq!(
            parse_head(b"GET /status?x HTTP/1.1\r\nAuthorization: Basic dTpw\r\n\r\nrest"),
            Head::Get {
                len: 53,
                route: Route::Status,
                auth: Auth::Basic {
                    user: "u".into(),
                    password: "p".into()
                }
            }
        );
        assert!(
            matches!(parse_head(b"PUT / HTTP/1.1\r\n\r\n"), Head::Reject(s, _) if s.starts_with("405"))
        );
        assert!(
            matches!(parse_head(b"GET /x HTTP/1.1\r\n\r\n"), Head::Reject(s, _) if s.starts_with("404"))
        );
        assert!(
            matches!(parse_head(b"\x01\x02\r\n\r\n"), Head::Reject(s, _) if s.starts_with("400"))
        );
        assert!(matches!(parse_head(&[b'a'; MAX_HEAD]), Head::Reject(s, _) if s.starts_with("4")));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nauthorization: Basic\r\n\r\n"),
            Head::Get {
                auth: Auth::Malformed(_),
                ..
            }
        ));
    }

    #[test]
    fn table_routes_and_their_queries() {
        let route = |head: &[u8]| match parse_head(head) {
            Head::Get { route, .. } => Ok(route),
            Head::Reject(status, body) => Err((status, body)),
            Head::Incomplete => Err(("incomplete", "")),
        };
        assert_eq!(route(b"GET /history HTTP/1.1\r\n\r\n"), Ok(Route::History));
        assert_eq!(
            route(b"GET /topics HTTP/1.1\r\n\r\n"),
            Ok(Route::Topics(TopicQuery {
                by_rate: false,
                limit: TOPICS_LIMIT
            }))
        );
        assert_eq!(
            route(b"GET /topics?limit=5&x=1&sort=rate HTTP/1.1\r\n\r\n"),
            Ok(Route::Topics(TopicQuery {
                by_rate: true,
                limit: 5
            }))
        );
        assert_eq!(
            route(b"GET /topics?sort=login HTTP/1.1\r\n\r\n"),
            Err(("400 Bad Request", "unknown sort key\n"))
        );
        assert_eq!(
            route(b"GET /clients HTTP/1.1\r\n\r\n"),
            Ok(Route::Clients(ClientQuery {
                sort: SortKey::Queued,
                limit: CLIENTS_LIMIT
            }))
        );
        assert_eq!(
            route(b"GET /clients?sort=login&limit=99999999 HTTP/1.1\r\n\r\n"),
            Ok(Route::Clients(ClientQuery {
                sort: SortKey::Login,
                limit: CLIENTS_MAX
            }))
        );
        for key in ["sent", "dropped", "subscriptions", "since", "queued"] {
            let head = format!("GET /clients?sort={key} HTTP/1.1\r\n\r\n");
            assert!(
                matches!(route(head.as_bytes()), Ok(Route::Clients(q)) if q.sort.as_str() == key)
            );
        }
        assert_eq!(
            route(b"GET /clients?sort=x HTTP/1.1\r\n\r\n"),
            Err(("400 Bad Request", "unknown sort key\n"))
        );
        assert_eq!(
            route(b"GET /topics?limit=-1 HTTP/1.1\r\n\r\n"),
            Err(("400 Bad Request", "limit is not a number\n"))
        );
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("dXNlcjE6MTIz").unwrap(), b"user1:123");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWI").unwrap(), b"ab");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("a*b").is_none());
        assert!(decode_base64("YQ===").is_none());
    }

    #[test]
    fn authorization_headers() {
        assert_eq!(
            basic_credentials(b"Basic dXNlcjE6MTIz"),
            Ok(Some(("user1".into(), "123".into())))
        );
        assert_eq!(
            basic_credentials(b"basic dTo6Yg=="),
            Ok(Some(("u".into(), ":b".into())))
        );
        assert_eq!(basic_credentials(b"Bearer x"), Ok(None));
        assert_eq!(
            basic_credentials(b"Basic"),
            Err("Invalid authorization header")
        );
        assert_eq!(
            basic_credentials(b"Basic !!!"),
            Err("Unable to decode credentials")
        );
        assert_eq!(
            basic_credentials(b"Basic dXNlcg=="),
            Err("Basic authorization error: password not specified")
        );
        assert_eq!(
            basic_credentials(b"Basic \xff"),
            Err("Unable to decode authorization header")
        );
    }
}

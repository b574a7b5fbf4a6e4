//! The stats endpoint on `server.bind_stats`: a minimal HTTP/1.1 server on
//! the event loop (one request per connection, `Connection: close`).
//!
//! | path | what | auth |
//! |---|---|---|
//! | `/` | the stats page (HTML) | admin |
//! | `/status` | counters as JSON (the reference's fields) | admin |
//! | `/metrics` | Prometheus text format | admin, or none from loopback |
//! | `/health` | `ok` | none |
//!
//! Admin means HTTP Basic credentials of a user whose ACL entry has
//! `admin: true` (bcrypt runs in the auth worker; verified logins are
//! cached), or, without credentials, an ACL entry `_` with `admin: true`.
//! Only GET is served. The request head is limited to 8 KiB and 32 headers,
//! and must arrive within the protocol timeout.

use std::net::IpAddr;

use super::auth::ANONYMOUS;
use super::auth::worker::{Job, Ticket};
use super::conn::{CloseReason, ConnId, Phase};
use super::event_loop::Server;
use super::handshake::Step;

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// The stats page.
const PAGE: &str = include_str!("stats.html");

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
}

/// A complete response.
struct Response {
    status: &'static str,
    content_type: &'static str,
    extra_header: &'static str,
    body: Vec<u8>,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_header: "",
            body: body.as_bytes().to_vec(),
        }
    }
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

fn is_loopback(ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| ip.is_loopback())
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
    let path = req.path.unwrap_or("/");
    let route = match path.split('?').next().unwrap_or("/") {
        "/" | "/index.html" => Route::Page,
        "/status" => Route::Status,
        "/metrics" => Route::Metrics,
        "/health" => Route::Health,
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

impl Server {
    /// Handles a request head on a stats connection.
    pub(crate) fn on_http(&mut self, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
        let (len, route, auth) = match parse_head(data) {
            Head::Incomplete => return Ok(Step::Need(1)),
            Head::Reject(status, body) => {
                self.respond(id, Response::text(status, body));
                return Ok(Step::Used(data.len()));
            }
            Head::Get { len, route, auth } => (len, route, auth),
        };
        let peer_ip = self.conns[id].ip();
        if route == Route::Health || (route == Route::Metrics && is_loopback(peer_ip)) {
            self.answer(id, route);
            return Ok(Step::Used(len));
        }
        match auth {
            Auth::Malformed(message) => {
                self.respond(id, Response::text("400 Bad Request", message))
            }
            Auth::Anonymous => self.authorize(id, route, ANONYMOUS),
            Auth::Basic { user, password } => self.check_password(id, route, &user, &password),
        }
        Ok(Step::Used(len))
    }

    fn check_password(&mut self, id: ConnId, route: Route, user: &str, password: &str) {
        let Some(entry) = self.core.auth.passwords.get(user) else {
            return self.failed_login(id);
        };
        if entry.unsupported_scheme().is_some() {
            return self.failed_login(id);
        }
        let hash = entry.hash.clone();
        if self.core.cache.contains(user, password, &hash) {
            return self.authorize(id, route, user);
        }
        if self.core.worker.in_flight >= super::handshake::MAX_PENDING_AUTH {
            return self.respond(id, Response::text("503 Service Unavailable", "busy\n"));
        }
        let job = Job::Verify {
            ticket: Ticket::Conn {
                conn: id,
                serial: self.conns[id].serial,
            },
            login: user.into(),
            hash,
            password: password.into(),
        };
        if self.core.worker.submit(job).is_err() {
            return self.respond(id, Response::text("503 Service Unavailable", ""));
        }
        let now = self.core.now;
        self.conns[id].set_phase(Phase::HttpAuthenticating(route), now);
    }

    /// A Basic-auth password came back from the worker.
    pub(crate) fn on_http_verified(&mut self, id: ConnId, route: Route, login: &str, ok: bool) {
        if ok {
            self.authorize(id, route, login);
        } else {
            self.failed_login(id);
        }
    }

    /// Wrong Basic credentials: 401, and the address's failure count (the
    /// same brute-force protection as PSRT logins).
    fn failed_login(&mut self, id: ConnId) {
        self.core.stats.login_failures += 1;
        if let Some(ip) = self.conns[id].ip() {
            let now = self.core.now;
            if let Some((failures, block)) = self.core.throttle.failure(ip, now) {
                log::warn!(
                    "{ip}: {failures} failed logins within a minute: refusing its connections for {}s",
                    block.as_secs()
                );
            }
        }
        self.unauthorized(id);
    }

    fn authorize(&mut self, id: ConnId, route: Route, login: &str) {
        let admin = self.core.auth.acl.get(login).is_some_and(|e| e.admin);
        if admin {
            self.answer(id, route);
        } else {
            self.unauthorized(id);
        }
    }

    fn unauthorized(&mut self, id: ConnId) {
        self.respond(
            id,
            Response {
                status: "401 Unauthorized",
                content_type: "text/plain; charset=utf-8",
                extra_header: "WWW-Authenticate: Basic realm=\"psrtd\"\r\n",
                body: Vec::new(),
            },
        );
    }

    fn answer(&mut self, id: ConnId, route: Route) {
        let response = match route {
            Route::Health => Response::text("200 OK", "ok\n"),
            Route::Page => Response {
                status: "200 OK",
                content_type: "text/html; charset=utf-8",
                extra_header: "",
                body: PAGE.as_bytes().to_vec(),
            },
            Route::Status => Response {
                status: "200 OK",
                content_type: "application/json",
                extra_header: "",
                body: self.status_json().into_bytes(),
            },
            Route::Metrics => Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                extra_header: "",
                body: self.metrics_text().into_bytes(),
            },
        };
        self.respond(id, response);
    }

    /// Queues the response and closes once it is written.
    fn respond(&mut self, id: ConnId, r: Response) {
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{}\r\n",
            r.status,
            r.content_type,
            r.body.len(),
            r.extra_header
        );
        let conn = &mut self.conns[id];
        conn.tx
            .push_slice(head.as_bytes(), false, &mut self.core.tx_pool);
        conn.tx.push_slice(&r.body, false, &mut self.core.tx_pool);
        self.close(id, CloseReason::HttpDone);
    }
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

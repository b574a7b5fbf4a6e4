//! The stats endpoint on `server.bind_stats`: a minimal HTTP/1.1 server on
//! the event loop (one request per connection, `Connection: close`).
//!
//! | path | what | auth |
//! |---|---|---|
//! | `/` | the stats page (HTML) | admin |
//! | `/status` | counters as JSON (the reference's fields; rates, latency and links under `psrtd`) | admin |
//! | `/topics` | the busiest topics as JSON (`?sort=messages|rate&limit=N`) | admin |
//! | `/clients` | logged-in clients as JSON (`?sort=KEY&limit=N`) | admin |
//! | `/history` | the last two minutes of rates and gauges as JSON (the page's charts) | admin |
//! | `/metrics` | Prometheus text format | admin, or none from loopback |
//! | `/health` | `ok` | none |
//!
//! Admin means HTTP Basic credentials of a user whose ACL entry has
//! `admin: true` (checked by the one auth pipeline: bcrypt in the workers,
//! verified logins cached, wrong ones remembered for a minute, unknown users
//! checked against the decoy hash), or, without credentials, an ACL entry `_` with
//! `admin: true`. Only GET is served. The request head is limited to 8 KiB
//! and 32 headers (`head.rs`), and must arrive within the protocol timeout.

pub(crate) mod head;
pub(crate) mod phase;
mod render;
#[cfg(test)]
pub(crate) mod table_tests;
mod tables;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use head::{Auth, Head, Route, parse_head};
use phase::Phase as Http;

use crate::server::auth::ANONYMOUS;
use crate::server::auth::login::Verdict;
use crate::server::auth::worker::{Ticket, Verified};
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::{Phase, Step};

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

    fn json(body: String) -> Self {
        Self {
            status: "200 OK",
            content_type: "application/json",
            extra_header: "",
            body: body.into_bytes(),
        }
    }
}

fn is_loopback(ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| ip.is_loopback())
}

/// Handles a request head on a stats connection. A response always ends
/// the connection (`HttpDone`).
pub(crate) fn on_input(cx: &mut Cx, id: ConnId, data: &[u8]) -> Result<Step, CloseReason> {
    let (len, route, auth) = match parse_head(data) {
        Head::Incomplete => return Ok(Step::Need(1)),
        Head::Reject(status, body) => {
            return respond(cx, id, Response::text(status, body));
        }
        Head::Get { len, route, auth } => (len, route, auth),
    };
    let peer_ip = cx.conns[id].ip();
    if route == Route::Health || (route == Route::Metrics && is_loopback(peer_ip)) {
        return answer(cx, id, route);
    }
    match auth {
        Auth::Malformed(message) => respond(cx, id, Response::text("400 Bad Request", message)),
        Auth::Anonymous => authorize(cx, id, route, ANONYMOUS),
        Auth::Basic { user, password } => {
            let ip = cx.conns[id].ip();
            if cx.core.login_refused(ip, &user) {
                return unauthorized(cx, id).map(|_| Step::Used(len));
            }
            let ticket = Ticket::Conn {
                conn: id,
                serial: cx.conns[id].serial,
            };
            match cx.core.check_password(ticket, &user, &password) {
                Verdict::Granted(_) => authorize(cx, id, route, &user),
                Verdict::Denied(_) => failed_login(cx, id, &user),
                Verdict::Busy => {
                    respond(cx, id, Response::text("503 Service Unavailable", "busy\n"))
                }
                Verdict::Pending => {
                    let now = cx.core.now;
                    cx.conns[id].set_phase(Phase::Http(Http::Authenticating(route)), now);
                    Ok(Step::Used(len))
                }
            }
        }
    }
    .map(|_| Step::Used(len))
}

/// A Basic-auth password came back from the worker.
pub(crate) fn on_verified(
    cx: &mut Cx,
    id: ConnId,
    route: Route,
    v: Verified,
) -> Result<(), CloseReason> {
    let user: Box<str> = v.login.as_str().into();
    match cx.core.finish_password(v) {
        Verdict::Granted(_) => authorize(cx, id, route, &user).map(drop),
        Verdict::Pending => Ok(()),
        Verdict::Denied(_) => failed_login(cx, id, &user).map(drop),
        Verdict::Busy => {
            respond(cx, id, Response::text("503 Service Unavailable", "busy\n")).map(drop)
        }
    }
}

/// Wrong Basic credentials: 401, and the address's failure count (the same
/// brute-force protection as PSRT logins).
fn failed_login(cx: &mut Cx, id: ConnId, user: &str) -> Result<Step, CloseReason> {
    let ip = cx.conns[id].ip();
    cx.core.login_failed(ip, user);
    unauthorized(cx, id)
}

fn authorize(cx: &mut Cx, id: ConnId, route: Route, login: &str) -> Result<Step, CloseReason> {
    let admin = cx.core.auth.acl.get(login).is_some_and(|e| e.admin);
    if admin {
        answer(cx, id, route)
    } else {
        unauthorized(cx, id)
    }
}

fn unauthorized(cx: &mut Cx, id: ConnId) -> Result<Step, CloseReason> {
    respond(
        cx,
        id,
        Response {
            status: "401 Unauthorized",
            content_type: "text/plain; charset=utf-8",
            extra_header: "WWW-Authenticate: Basic realm=\"psrtd\"\r\n",
            body: Vec::new(),
        },
    )
}

fn answer(cx: &mut Cx, id: ConnId, route: Route) -> Result<Step, CloseReason> {
    let response = match route {
        Route::Health => Response::text("200 OK", "ok\n"),
        Route::Page => Response {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            extra_header: "",
            body: render::PAGE.as_bytes().to_vec(),
        },
        Route::Status => Response::json(render::status_json(cx.core, cx.conns)),
        Route::Metrics => Response {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            extra_header: "",
            body: render::metrics_text(cx.core, cx.conns).into_bytes(),
        },
        Route::Topics(query) => Response::json(tables::topics_json(cx.core, query)),
        Route::Clients(query) => Response::json(tables::clients_json(cx.core, cx.conns, query)),
        Route::History => Response::json(tables::history_json(cx.core)),
    };
    respond(cx, id, response)
}

/// Queues the response; the connection closes once it is written.
fn respond(cx: &mut Cx, id: ConnId, r: Response) -> Result<Step, CloseReason> {
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n{}\r\n",
        r.status,
        r.content_type,
        r.body.len(),
        r.extra_header
    );
    let conn = &mut cx.conns[id];
    conn.tx
        .push_slice(head.as_bytes(), false, &mut cx.core.tx_pool);
    conn.tx.push_slice(&r.body, false, &mut cx.core.tx_pool);
    Err(CloseReason::HttpDone)
}

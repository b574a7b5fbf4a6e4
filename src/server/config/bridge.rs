//! The optional top-level `bridges:` list: outgoing MQTT 3.1.1 client
//! connections from psrtd to brokers, each forwarding local `out` topics to
//! the broker and publishing the broker's `in` topics locally. Validated
//! here (so `psrtd -t` checks it): the URL, the masks under MQTT filter
//! rules, the sizes (`64MiB`, `1GiB`, plain bytes), the CA file of an
//! `mqtts://` bridge (read and parsed now, so a reload compares it too).

use std::fmt;
use std::path::{Path, PathBuf};

use psrt_protocol::mqtt::validate_filter;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::units::{Fraction, SizeError, parse_size};

/// Default bound of a bridge's memory queue (`queue_bytes`).
pub(super) const DEFAULT_BRIDGE_QUEUE_BYTES: u64 = 64 << 20;
/// Default bound of a bridge's spool on disk (`spool_bytes`).
pub(super) const DEFAULT_BRIDGE_SPOOL_BYTES: u64 = 1 << 30;
/// Default MQTT keep-alive toward the broker, seconds.
pub(super) const DEFAULT_BRIDGE_KEEPALIVE: u16 = 30;
/// Default QoS 1 messages in flight (sent, not yet acknowledged).
pub(super) const DEFAULT_BRIDGE_INFLIGHT: usize = 256;
/// Largest in-flight window (packet ids must stay unique in it).
pub(super) const MAX_BRIDGE_INFLIGHT: usize = 1024;
/// Bridges at most.
pub(super) const MAX_BRIDGES: usize = 64;

/// A byte size as written: a number, or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    /// Bytes: `b`, `kb`/`mb`/`gb` (powers of 1000), `kib`/`mib`/`gib`
    /// (powers of 1024), case-insensitive; whole numbers only (the crate's
    /// parser, `crate::units`). An error names `key`.
    fn bytes(&self, key: &str) -> Result<u64, String> {
        match self {
            Self::Bytes(n) => Ok(*n),
            Self::Text(t) => parse_size(t, Fraction::Refused).map_err(|e| match e {
                SizeError::Unit(_) => format!(
                    "{key}: {:?} is not a size (examples: 1048576, 64MiB, 1GiB, 500mb)",
                    t.trim()
                ),
                SizeError::Number => {
                    format!(
                        "{key}: {:?} is not a size (examples: 64MiB, 1GiB)",
                        t.trim()
                    )
                }
            }),
        }
    }
}

/// One entry of `bridges:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BridgeEntry {
    name: String,
    url: String,
    user: Option<String>,
    password: Option<String>,
    tls_ca: Option<PathBuf>,
    client_id: Option<String>,
    #[serde(default)]
    out: Vec<String>,
    #[serde(default, rename = "in")]
    inbound: Vec<String>,
    qos: Option<u8>,
    queue_bytes: Option<Size>,
    spool: Option<PathBuf>,
    spool_bytes: Option<Size>,
    keepalive: Option<u16>,
    inflight: Option<usize>,
    acl: Option<String>,
}

/// A validated bridge.
#[derive(Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// Its name in logs, `/status` and `/metrics`.
    pub name: String,
    /// The URL as written (logs).
    pub url: String,
    /// Broker host (a name, resolved off the loop, or an address).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// `mqtts://`: the CA certificates (PEM, read at load) the broker's
    /// certificate must chain to.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// MQTT user name.
    pub user: Option<String>,
    /// MQTT password.
    pub password: Option<String>,
    /// MQTT client identifier.
    pub client_id: String,
    /// Local masks (MQTT filter rules) forwarded to the broker.
    pub out: Vec<String>,
    /// Broker filters subscribed and published locally.
    pub inbound: Vec<String>,
    /// QoS toward the broker: 0 or 1 (also the QoS asked for `in`).
    pub qos: u8,
    /// Bound of the memory queue, bytes (topic + payload).
    pub queue_bytes: usize,
    /// Folder of the spool on disk, if any.
    pub spool: Option<PathBuf>,
    /// Bound of the spool, bytes.
    pub spool_bytes: u64,
    /// MQTT keep-alive, seconds.
    pub keepalive: u16,
    /// QoS 1 messages sent and not yet acknowledged, at most.
    pub inflight: usize,
    /// Inbound publishes are checked against this login's ACL entry
    /// (default: anything the `in` filters cover).
    pub acl: Option<String>,
}

impl fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("user", &self.user)
            .field("client_id", &self.client_id)
            .field("out", &self.out)
            .field("in", &self.inbound)
            .field("qos", &self.qos)
            .field("queue_bytes", &self.queue_bytes)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

/// Splits `mqtt://host:port` / `mqtts://host:port` (port optional).
fn parse_url(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else {
        return Err(format!("url {url:?} must start with mqtt:// or mqtts://"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#']) {
        return Err(format!(
            "url {url:?}: only mqtt[s]://host[:port] (put the user and password in user: and password:)"
        ));
    }
    let default_port = if tls { 8883 } else { 1883 };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err(format!("url {url:?}: unclosed [ in the host"));
        };
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("url {url:?}: bad port")),
        };
        (format!("[{h}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("url {url:?} has no host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("url {url:?}: {p:?} is not a port")),
        },
    };
    Ok((tls, host, port))
}

fn check_filters(key: &str, filters: &[String]) -> Result<(), String> {
    for f in filters {
        validate_filter(f).map_err(|e| format!("{key}: {f:?} is not an MQTT filter: {e}"))?;
        if f.len() > 65535 {
            return Err(format!("{key}: a filter is longer than 65535 bytes"));
        }
    }
    Ok(())
}

fn read_ca(path: &Path) -> Result<Vec<u8>, String> {
    let pem =
        std::fs::read(path).map_err(|e| format!("tls_ca {}: cannot read: {e}", path.display()))?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| format!("tls_ca {}: not a PEM certificate: {e:?}", path.display()))?;
        n += 1;
    }
    if n == 0 {
        return Err(format!(
            "tls_ca {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(pem)
}

/// Validates the list. `resolve` makes relative paths relative to the
/// config file; `host` is the machine's name (default client ids).
pub(super) fn validate(
    entries: Vec<BridgeEntry>,
    resolve: impl Fn(PathBuf) -> PathBuf,
    host: &str,
) -> Result<Vec<BridgeConfig>, String> {
    if entries.len() > MAX_BRIDGES {
        return Err(format!("bridges: at most {MAX_BRIDGES} bridges"));
    }
    let mut out: Vec<BridgeConfig> = Vec::new();
    for e in entries {
        let name = e.name.clone();
        let bad = |msg: String| format!("bridges: {name:?}: {msg}");
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "bridges: name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 - _ ."
            ));
        }
        if out.iter().any(|b| b.name == name) {
            return Err(bad("the name is used twice".into()));
        }
        let spool = e.spool.map(&resolve);
        if let Some(dir) = &spool {
            if out.iter().any(|b| b.spool.as_ref() == Some(dir)) {
                return Err(bad(format!(
                    "spool {} is another bridge's spool too",
                    dir.display()
                )));
            }
        }
        let (tls, host_part, port) = parse_url(&e.url).map_err(bad)?;
        let tls_ca_pem = match (tls, e.tls_ca) {
            (true, Some(ca)) => Some(read_ca(&resolve(ca)).map_err(bad)?),
            (true, None) => {
                return Err(bad(
                    "mqtts:// needs tls_ca (the CA that signed the broker's certificate)".into(),
                ));
            }
            (false, Some(_)) => return Err(bad("tls_ca is only for mqtts:// URLs".into())),
            (false, None) => None,
        };
        if e.password.is_some() && e.user.is_none() {
            return Err(bad("password without user".into()));
        }
        check_filters("out", &e.out).map_err(bad)?;
        check_filters("in", &e.inbound).map_err(bad)?;
        if e.out.is_empty() && e.inbound.is_empty() {
            return Err(bad(
                "neither out nor in lists a topic: nothing to bridge".into()
            ));
        }
        let qos = e.qos.unwrap_or(1);
        if qos > 1 {
            return Err(bad(format!("qos: {qos} (0 or 1)")));
        }
        let queue_bytes = match &e.queue_bytes {
            Some(s) => s.bytes("queue_bytes").map_err(bad)?,
            None => DEFAULT_BRIDGE_QUEUE_BYTES,
        };
        if queue_bytes < 1024 {
            return Err(bad(format!("queue_bytes: {queue_bytes} is below 1KiB")));
        }
        let queue_bytes = usize::try_from(queue_bytes)
            .map_err(|_| bad(format!("queue_bytes: {queue_bytes} is too large")))?;
        let spool_bytes = match (&spool, &e.spool_bytes) {
            (_, Some(s)) => s.bytes("spool_bytes").map_err(bad)?,
            (_, None) => DEFAULT_BRIDGE_SPOOL_BYTES,
        };
        if e.spool_bytes.is_some() && spool.is_none() {
            return Err(bad("spool_bytes without spool (the spool's folder)".into()));
        }
        if spool.is_some() && spool_bytes < 1 << 20 {
            return Err(bad(format!("spool_bytes: {spool_bytes} is below 1MiB")));
        }
        let keepalive = e.keepalive.unwrap_or(DEFAULT_BRIDGE_KEEPALIVE);
        if keepalive < 2 {
            return Err(bad("keepalive: at least 2 seconds".into()));
        }
        let inflight = e.inflight.unwrap_or(DEFAULT_BRIDGE_INFLIGHT);
        if !(1..=MAX_BRIDGE_INFLIGHT).contains(&inflight) {
            return Err(bad(format!(
                "inflight: {inflight} is out of range (1 to {MAX_BRIDGE_INFLIGHT})"
            )));
        }
        let client_id = e
            .client_id
            .unwrap_or_else(|| format!("psrtd-{host}-{name}"));
        if client_id.is_empty() || client_id.len() > 65535 {
            return Err(bad("client_id: 1 to 65535 bytes".into()));
        }
        out.push(BridgeConfig {
            name,
            url: e.url,
            host: host_part,
            port,
            tls_ca_pem,
            user: e.user,
            password: e.password,
            client_id,
            out: e.out,
            inbound: e.inbound,
            qos,
            queue_bytes,
            spool,
            spool_bytes,
            keepalive,
            inflight,
            acl: e.acl,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://broker.example:1884"),
            Ok((false, "broker.example".into(), 1884))
        );
        assert_eq!(parse_url("mqtt://h"), Ok((false, "h".into(), 1883)));
        assert_eq!(parse_url("mqtts://h/"), Ok((true, "h".into(), 8883)));
        assert_eq!(
            parse_url("mqtt://[::1]:99"),
            Ok((false, "[::1]".into(), 99))
        );
        assert_eq!(parse_url("mqtt://[::1]"), Ok((false, "[::1]".into(), 1883)));
        for bad in [
            "tcp://h:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:x",
            "mqtt://u:p@h:1",
            "mqtt://h:1/path",
            "mqtt://[::1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        // The parsing itself is tested in `crate::units`; here: plain
        // numbers, and errors that name the key.
        let s = |t: &str| Size::Text(t.into()).bytes("queue_bytes");
        assert_eq!(s("64MiB"), Ok(64 << 20));
        assert_eq!(s(" 500 mb"), Ok(500_000_000));
        assert_eq!(Size::Bytes(7).bytes("k"), Ok(7));
        for bad in ["", "MiB", "1.5MiB", "12 parsecs", "99999999999999999999GiB"] {
            let err = s(bad).unwrap_err();
            assert!(err.starts_with("queue_bytes: "), "{bad}: {err}");
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
    }
}

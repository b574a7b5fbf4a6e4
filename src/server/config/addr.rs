//! Listening addresses in `config.yml`: `host:port` or a Unix socket path,
//! written as one string or a list (`proto.bind`, `mqtt.bind`, ...).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// A string or a list of strings (`bind: 0.0.0.0:2873` or `bind: [a, b]`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(untagged, expecting = "an address string or a list of address strings")]
pub(super) enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// A listening address for the PSRT stream protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `host:port` (a name is resolved at bind time).
    Tcp(String),
    /// A Unix stream socket path (ends with `.sock` or `.socket`).
    Unix(PathBuf),
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// `host:port` (or `[v6]:port`) with a numeric port.
pub(super) fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

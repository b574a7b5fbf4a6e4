//! SIGHUP for bridges: `config.yml` is read again in the worker (its
//! `bridges:` list validated as at start) and applied here by name.
//!
//! * unchanged bridges keep their connection, queue and counters;
//! * a removed bridge's connection is closed and its memory queue dropped
//!   (logged with the count); its spool files stay on disk (a later start
//!   with the bridge configured again sends them);
//! * a changed bridge keeps its queue and counters; its connection is
//!   closed and made again with the new settings;
//! * a new bridge starts connecting at once.
//!
//! A spool is opened (its folder scanned) only at start, never on the
//! loop: adding a bridge with a spool, or changing a bridge's `spool` or
//! `spool_bytes`, takes a restart (logged; the rest of the change applies).

use log::{info, warn};

use super::state::Bridge;
use crate::server::config::BridgeConfig;
use crate::server::conn::CloseReason;
use crate::server::core::Cx;

/// Applies a reloaded `bridges:` list.
pub(crate) fn apply(cx: &mut Cx, list: Vec<BridgeConfig>) {
    let now = cx.core.now;
    let keys: Vec<usize> = cx.core.bridges.list.iter().map(|(k, _)| k).collect();
    for key in keys {
        let name = cx.core.bridges.list[key].config.name.clone();
        match list.iter().find(|c| c.name == name) {
            None => remove(cx, key),
            Some(new) if *new == cx.core.bridges.list[key].config => {}
            Some(new) => change(cx, key, new.clone()),
        }
    }
    for c in list {
        if cx
            .core
            .bridges
            .list
            .iter()
            .any(|(_, b)| b.config.name == c.name)
        {
            continue;
        }
        if c.spool.is_some() {
            warn!(
                "bridge {}: not added: a bridge with a spool is opened at start (restart psrtd to add it)",
                c.name
            );
            continue;
        }
        let (name, url) = (c.name.clone(), c.url.clone());
        match Bridge::new(c, now) {
            Ok(b) => {
                cx.core.bridges.list.insert(b);
                info!("bridge {name} added ({url})");
            }
            Err(e) => warn!("bridge {name}: not added: {e}"),
        }
    }
}

fn remove(cx: &mut Cx, key: usize) {
    let mut b = cx.core.bridges.list.remove(key);
    if let Some(id) = b.peer.conn {
        cx.core.close_later(
            id,
            CloseReason::Bridge("the bridge was removed from the configuration".into()),
        );
    }
    if let Some(sp) = b.spool.take() {
        // Its writer finishes on its own; the loop does not wait for it.
        sp.handle.detach();
    }
    info!(
        "bridge {} removed ({} queued message(s) in memory dropped)",
        b.config.name,
        b.queue.len()
    );
}

fn change(cx: &mut Cx, key: usize, mut new: BridgeConfig) {
    let now = cx.core.now;
    let b = &mut cx.core.bridges.list[key];
    if (&new.spool, new.spool_bytes) != (&b.config.spool, b.config.spool_bytes) {
        warn!(
            "bridge {}: spool and spool_bytes changes take a restart; the other changes apply now",
            new.name
        );
        new.spool = b.config.spool.clone();
        new.spool_bytes = b.config.spool_bytes;
        if new == b.config {
            return;
        }
    }
    let tls = match Bridge::tls_for(&new) {
        Ok(tls) => tls,
        Err(e) => {
            warn!("bridge {}: not changed: {e}", new.name);
            return;
        }
    };
    info!("bridge {}: configuration changed ({})", new.name, new.url);
    b.config = new;
    b.tls = tls;
    b.peer.addrs.clear();
    match b.peer.conn {
        Some(id) => cx.core.close_later(
            id,
            CloseReason::Bridge("its configuration changed: connecting again".into()),
        ),
        None => b.peer.retry_at = Some(now),
    }
}

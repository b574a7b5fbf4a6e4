//! A reload (SIGHUP) applied to MQTT sessions, as `psrt::reload` does for
//! PSRT: a login whose ACL entry is gone or whose password hash changed
//! is disconnected (an away session is dropped), the others get the new
//! permissions, and filters the new ACL no longer allows are dropped.

use log::info;

use super::phase::Phase as Mqtt;
use super::session::drop_session;
use super::state::sub_id;
use crate::server::conn::CloseReason;
use crate::server::core::Cx;
use crate::server::phase::Phase;

/// Brings every MQTT session in line with `cx.core.auth`.
pub(crate) fn apply(cx: &mut Cx) {
    let core = &mut *cx.core;
    let mut revoked = Vec::new();
    for (key, s) in core.mqtt.slab.iter_mut() {
        if s.trusted {
            continue;
        }
        let entry = core.auth.acl.get(&s.login);
        let hash_ok = s.hash.as_ref().is_none_or(|h| {
            core.auth
                .passwords
                .get(&s.login)
                .is_some_and(|e| &e.hash == h)
        });
        let Some(entry) = entry.filter(|_| hash_ok) else {
            revoked.push((key, s.conn));
            continue;
        };
        s.acl = entry.clone();
        let mut changed = false;
        s.filters.retain(|f| {
            let keep = entry.can_subscribe(&f.filter);
            if !keep {
                core.matcher.unsubscribe(&f.filter, sub_id(key));
                if let Some(p) = f.filter.strip_suffix("/#").filter(|_| f.parent) {
                    core.matcher.unsubscribe(p, sub_id(key));
                }
                info!(
                    "MQTT {}: subscription {:?} dropped: no longer allowed by the ACL",
                    s.client_id, f.filter
                );
                changed = true;
            }
            keep
        });
        if changed {
            s.filters_changed();
        }
        if let Some(Phase::Mqtt(Mqtt::Connected(link))) = s
            .conn
            .and_then(|c| cx.conns.get_mut(c))
            .map(|c| &mut c.phase)
        {
            link.acl = entry.clone();
        }
    }
    for (key, conn) in revoked {
        match conn {
            Some(id) => core.close_later(id, CloseReason::Revoked("ACL entry or password changed")),
            None => drop_session(core, key),
        }
    }
}

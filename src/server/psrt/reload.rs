//! A reload (SIGHUP) applied to live PSRT sessions: the new auth database
//! has been swapped in; a login whose ACL entry is gone or whose password
//! hash changed is disconnected, a session's new permissions replace the
//! old, and subscriptions the new ACL no longer allows are dropped.

use log::info;

use super::state::Phase as Psrt;
use crate::server::conn::{CloseReason, ConnId};
use crate::server::core::Cx;
use crate::server::phase::Phase;

/// Brings every session in line with `cx.core.auth`; revoked sessions are
/// closed through the effect queue.
pub(crate) fn apply(cx: &mut Cx) {
    let core = &mut *cx.core;
    let mut revoked: Vec<(ConnId, &'static str)> = Vec::new();
    for (id, conn) in cx.conns.iter_mut() {
        let Phase::Psrt(Psrt::Control(session)) = &mut conn.phase else {
            continue;
        };
        if session.trusted {
            continue;
        }
        let Some(entry) = core.auth.acl.get(&session.login) else {
            revoked.push((id, "no ACL entry any more"));
            continue;
        };
        if let Some(hash) = &session.hash {
            let current = core.auth.passwords.get(&session.login);
            if current.is_none_or(|e| &e.hash != hash) {
                revoked.push((id, "password changed or user removed"));
                continue;
            }
        }
        session.acl = entry.clone();
        let dropped: Vec<Box<str>> = session
            .masks
            .iter()
            .filter(|m| !entry.can_subscribe(m))
            .map(Into::into)
            .collect();
        for mask in dropped {
            session.masks.remove(&mask);
            core.matcher.unsubscribe(&mask, id);
            info!(
                "{}: subscription {mask:?} of {} dropped: no longer allowed by the ACL",
                conn.peer, session.login
            );
        }
    }
    for (id, why) in revoked {
        core.close_later(id, CloseReason::Revoked(why));
    }
}

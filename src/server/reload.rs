//! Applying a reload (SIGHUP): the worker has read and parsed every auth
//! file; here the new database is swapped in whole and live sessions are
//! brought in line with it — a login whose ACL entry is gone or whose
//! password hash changed is disconnected, and subscriptions the new ACL no
//! longer allows are dropped. A failed load keeps everything as it was.

use log::{error, info, warn};

use super::auth::AuthDb;
use super::config::ConfigError;
use super::conn::{CloseReason, ConnId, Phase};
use super::event_loop::Server;

impl Server {
    pub(crate) fn on_reloaded(&mut self, result: Result<(AuthDb, Vec<String>), ConfigError>) {
        self.core.reload_running = false;
        match result {
            Ok((db, warnings)) => {
                for w in warnings {
                    warn!("{w}");
                }
                info!("reload ok: {}", db.summary());
                self.core.auth = db;
                self.core.cache.clear();
                self.core.stats.reloads_ok += 1;
                self.apply_to_sessions();
            }
            Err(e) => {
                self.core.stats.reloads_failed += 1;
                error!("reload failed, keeping the previous ACL, passwords and keys: {e}");
            }
        }
        if std::mem::take(&mut self.core.reload_queued) {
            self.request_reload();
        } else {
            self.notifier.ready("reload finished");
        }
    }

    fn apply_to_sessions(&mut self) {
        let mut revoked: Vec<(ConnId, &'static str)> = Vec::new();
        let mut dropped: Vec<(ConnId, Box<str>)> = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            let Phase::Control(session) = &mut conn.phase else {
                continue;
            };
            if session.trusted {
                continue;
            }
            let Some(entry) = self.core.auth.acl.get(&session.login) else {
                revoked.push((id, "no ACL entry any more"));
                continue;
            };
            if let Some(hash) = &session.hash {
                let current = self.core.auth.passwords.get(&session.login);
                if current.is_none_or(|e| &e.hash != hash) {
                    revoked.push((id, "password changed or user removed"));
                    continue;
                }
            }
            session.acl = entry.clone();
            for mask in &session.masks {
                if !entry.can_subscribe(mask) {
                    dropped.push((id, mask.clone()));
                }
            }
        }
        for (id, mask) in dropped {
            if let Some(Phase::Control(session)) = self.conns.get_mut(id).map(|c| &mut c.phase) {
                session.masks.remove(&mask);
                self.core.matcher.unsubscribe(&mask, id);
                info!(
                    "{}: subscription {mask:?} of {} dropped: no longer allowed by the ACL",
                    self.conns[id].peer,
                    session_login(&self.conns[id].phase)
                );
            }
        }
        for (id, why) in revoked {
            self.close(id, CloseReason::Revoked(why));
        }
    }
}

fn session_login(phase: &Phase) -> &str {
    match phase {
        Phase::Control(s) => &s.login,
        _ => "?",
    }
}

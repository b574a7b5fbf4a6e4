//! The commented samples in `config/` load exactly as shipped.

use std::path::Path;

use psrt::server::config::BindAddr;
use psrt::server::{ANONYMOUS, Acl, Keys, Passwords};
use psrt::server::{AuthDb, Config};

fn sample(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
}

/// config.yml, acl.yml and psrt-passwd load together and mean what their
/// comments say.
#[test]
fn sample_config_loads_with_its_files() {
    let config = Config::load(&sample("config.yml")).expect("sample config.yml");
    assert_eq!(config.bind[0], BindAddr::Tcp("127.0.0.1:2873".into()));
    assert!(matches!(&config.bind[1], BindAddr::Unix(p) if p.ends_with("psrtd.sock")));
    assert!(!config.allow_anonymous, "the sample is not anonymous");
    assert!(!config.trust_unix_socket);
    let (db, warnings) = AuthDb::load(&config.auth).expect("sample auth files");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(db.passwords.len(), 3);
    let operator = db.acl.get("operator").unwrap();
    assert!(operator.can_publish("plant1/line2/temp"));
    assert!(operator.can_publish("cmd/valve7/set"));
    assert!(!operator.can_publish("cmd/valve7/get"));
    let anon = db.acl.get(ANONYMOUS).unwrap();
    assert!(anon.can_subscribe("#") && !anon.can_publish("x"));
    assert!(db.acl.get("replicator").unwrap().replicator);
}

/// keys.yml parses against the sample ACL; the password file uses bcrypt.
#[test]
fn sample_keys_and_passwords() {
    let acl_text = std::fs::read_to_string(sample("acl.yml")).unwrap();
    let acl = Acl::parse(&acl_text, &sample("acl.yml")).unwrap();
    let keys_text = std::fs::read_to_string(sample("keys.yml")).unwrap();
    let (keys, warnings) = Keys::parse(&keys_text, &sample("keys.yml"), &acl).unwrap();
    assert_eq!(keys.len(), 1, "{warnings:?}");
    let (passwords, warnings) =
        Passwords::parse(&std::fs::read_to_string(sample("psrt-passwd")).unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    let op = passwords.get("operator").unwrap();
    assert!(bcrypt::verify("change-me", &op.hash).unwrap());
}

/// The sample cluster.yml loads (the reference format).
#[test]
fn sample_cluster_file_loads() {
    let nodes = psrt::server::load_nodes(&sample("cluster.yml")).unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].user, "replicator");
}

/// The systemd unit checks the config before starting and reloads with HUP.
#[test]
fn systemd_unit_uses_test_config_and_sighup() {
    let unit = std::fs::read_to_string(sample("psrtd.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/psrtd -t -C /etc/psrtd/config.yml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
}

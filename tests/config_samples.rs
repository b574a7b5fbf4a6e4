//! The commented samples in `config/` load exactly as shipped, and so does
//! the Debian package's `/etc/psrtd` (`config/config.yml` with
//! `packaging/deb/acl.yml` and an empty password file), which is safe as
//! installed: loopback listeners only, no anonymous access.

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

/// The package's default config: TCP and the stats page on loopback, the
/// Unix socket in /run/psrtd, no UDP, no anonymous clients; it loads with
/// the packaged ACL and an empty password file, without a warning.
/// (`packaging/deb/check.sh` checks the package holds this file.)
#[test]
fn packaged_default_config_is_loopback_only() {
    let dir = std::env::temp_dir().join(format!("psrt-deb-config-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(sample("config.yml"), dir.join("config.yml")).unwrap();
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/acl.yml");
    std::fs::copy(acl, dir.join("acl.yml")).unwrap();
    std::fs::write(dir.join("psrt-passwd"), "").unwrap();

    let config = Config::load(&dir.join("config.yml")).expect("packaged config.yml");
    let loopback = |addr: &str| {
        addr.parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    };
    assert!(!config.bind.is_empty());
    for bind in &config.bind {
        match bind {
            BindAddr::Tcp(addr) => assert!(loopback(addr), "{addr} is not loopback"),
            BindAddr::Unix(path) => assert!(path.starts_with("/run/psrtd/"), "{path:?}"),
        }
    }
    assert!(
        config.bind_udp.is_empty(),
        "UDP is off: {:?}",
        config.bind_udp
    );
    assert!(config.bind_stats.as_deref().is_some_and(loopback));
    assert!(!config.allow_anonymous);
    let (db, warnings) = AuthDb::load(&config.auth).expect("packaged auth files");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        db.passwords.len(),
        0,
        "nobody can log in before psrtd passwd"
    );
    let admin = db.acl.get("admin").expect("the admin entry");
    assert!(admin.admin && admin.can_publish("any/topic"));
    assert!(db.acl.get(ANONYMOUS).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The systemd unit checks the config before starting and reloads with HUP.
#[test]
fn systemd_unit_uses_test_config_and_sighup() {
    let unit = std::fs::read_to_string(sample("psrtd.service")).unwrap();
    assert!(unit.contains("ExecStartPre=/usr/local/bin/psrtd -t -C /etc/psrtd/config.yml"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    assert!(
        unit.contains("User=psrtd\nGroup=psrtd\n"),
        "the package's user"
    );
}

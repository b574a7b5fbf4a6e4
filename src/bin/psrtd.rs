//! `psrtd`: parse arguments, load the config and the auth files, set up
//! logging, bind, write the pid file, run the loop, clean up. `psrtd passwd
//! …` runs the password-file helper (`psrt::passwd`) instead.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use log::{LevelFilter, error, info, warn};
use psrt::server::{AuthDb, Config, Server};

const HELP: &str = "\
psrtd — PSRT pub/sub telemetry server (single-threaded event loop)

USAGE:
    psrtd [OPTIONS]
    psrtd passwd [--cost N] [-D] FILE USER   set or remove a user's password in a
                                             password file (see psrtd passwd --help)

OPTIONS:
    -C, --config FILE   config file (reference psrtd format). Without it, the first of
                        /etc/psrtd/config.yml and /usr/local/etc/psrtd/config.yml that
                        exists is used; if neither exists psrtd runs on its embedded
                        default: TCP and UDP 127.0.0.1:2873, stats on
                        http://127.0.0.1:8880/, anonymous publish/subscribe.
    -t, --test-config   load and check the config, ACL, password and key files, then
                        exit 0 (valid) or 1 (with the file, line and reason). Binds
                        nothing, writes nothing.
    -v, --verbose       debug logging (connects, disconnects, logins)
    -V, --version       print the version
    -h, --help          print this help

SIGNALS:
    SIGHUP              reload ACL, passwords and keys (all or nothing; live sessions
                        follow the new ACL; a broken file keeps the old set)
    SIGTERM, SIGINT     close all connections, remove the pid file and Unix sockets, exit 0

Documentation: README.md in the source tree; sample configs in config/.
";

struct Args {
    config: Option<PathBuf>,
    test_config: bool,
    verbose: bool,
}

fn parse_args(raw: Vec<OsString>) -> Result<Option<Args>, String> {
    let mut args = pico_args::Arguments::from_vec(raw);
    if args.contains(["-h", "--help"]) {
        print!("{HELP}");
        return Ok(None);
    }
    if args.contains(["-V", "--version"]) {
        println!("psrtd {}", env!("CARGO_PKG_VERSION"));
        return Ok(None);
    }
    let parsed = Args {
        config: args
            .opt_value_from_str(["-C", "--config"])
            .map_err(|e| e.to_string())?,
        test_config: args.contains(["-t", "--test-config"]),
        verbose: args.contains(["-v", "--verbose"]),
    };
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!(
            "unexpected argument {:?} (see psrtd --help)",
            rest[0]
        ));
    }
    Ok(Some(parsed))
}

fn init_logging(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let mut cfg = simplelog::ConfigBuilder::new();
    cfg.set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off);
    // Under systemd the journal adds its own timestamps.
    if std::env::var_os("INVOCATION_ID").is_some() {
        cfg.set_time_level(LevelFilter::Off);
    } else {
        let _ = cfg.set_time_offset_to_local();
    }
    let _ = simplelog::SimpleLogger::init(level, cfg.build());
}

fn load_config(path: Option<PathBuf>) -> Result<Config, String> {
    match path.or_else(Config::find_default_file) {
        Some(p) => Config::load(&p).map_err(|e| e.to_string()),
        None => {
            info!(
                "no config file given (-C) or found in /etc/psrtd or /usr/local/etc/psrtd: \
                 running on the embedded default: TCP and UDP 127.0.0.1:2873, stats http://127.0.0.1:8880/, anonymous publish/subscribe"
            );
            Ok(Config::embedded_default())
        }
    }
}

fn write_pid_file(path: &Path) -> Result<(), String> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .map_err(|e| format!("cannot write pid file {}: {e}", path.display()))
}

fn run(args: Args) -> Result<(), String> {
    let config = load_config(args.config)?;
    let (auth, warnings) = AuthDb::load(&config.auth).map_err(|e| e.to_string())?;
    for w in &warnings {
        warn!("{w}");
    }
    for key in &config.ignored {
        warn!("config: ignored {key}");
    }
    let cluster = match &config.cluster_file {
        Some(file) => psrt::server::load_nodes(file).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    if args.test_config {
        let source = config
            .source
            .as_ref()
            .map_or_else(|| "embedded default".into(), |p| p.display().to_string());
        println!(
            "{source}: configuration OK ({}; {} bind address(es); {} MQTT listener(s); {} cluster node(s); {} bridge(s))",
            auth.summary(),
            config.bind.len(),
            config
                .mqtt
                .as_ref()
                .map_or(0, |m| m.bind.len() + m.bind_tls.len()),
            cluster.len(),
            config.bridges.len()
        );
        return Ok(());
    }
    if config.bind.is_empty() {
        return Err("proto.bind lists no address: nothing to listen on".into());
    }
    raise_fd_limit();
    let pid_file = config.pid_file.clone();
    let timeout = config.timeout;
    let auth_summary = auth.summary();
    let mut server = Server::bind(config, auth).map_err(|e| e.to_string())?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    if let Some(p) = &pid_file {
        write_pid_file(p)?;
    }
    if !cluster.is_empty() {
        info!("replicating to {} cluster node(s)", cluster.len());
        server.replicate_to(cluster);
    }
    server.notify_systemd();
    info!(
        "psrtd {} listening on {} (timeout {:?}; {auth_summary})",
        env!("CARGO_PKG_VERSION"),
        server.describe_listeners().join(", "),
        timeout
    );
    let result = server.run().map_err(|e| format!("event loop failed: {e}"));
    drop(server);
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    result
}

/// Lets the server use every descriptor the hard limit allows.
fn raise_fd_limit() {
    if let Err(e) = psrt::server::raise_nofile_limit() {
        warn!("cannot raise the open-files limit: {e}");
    }
}

/// Large message buffers start on a page boundary (see `psrt::page_alloc`).
#[global_allocator]
static ALLOC: psrt::page_alloc::PageAlignedLarge = psrt::page_alloc::PageAlignedLarge;

fn main() -> ExitCode {
    let mut raw: Vec<OsString> = std::env::args_os().skip(1).collect();
    if raw.first().is_some_and(|a| a == "passwd") {
        raw.remove(0);
        return psrt::passwd::main(raw);
    }
    let args = match parse_args(raw) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("psrtd: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(args.verbose);
    let test = args.test_config;
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if test {
                println!("configuration invalid: {e}");
            } else {
                error!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

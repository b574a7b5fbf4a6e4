//! The `psrt-cli` program (its `main` is a one-line call to [`main`]):
//! argument parsing, logging to stderr, and the four modes: publish,
//! subscribe, top and benchmark. Errors end as one line on stderr and exit
//! code 1; nothing here panics on user or network input.

mod args;
mod benchmark;
mod subscribe;
mod table;
mod top;
mod units;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::Receiver;

use simplelog::{ConfigBuilder, LevelFilter, WriteLogger};

use self::args::{Args, HELP, Mode, Parsed};
use crate::client::{Client, Config, Error, Message};
use crate::protocol::DEFAULT_PRIORITY;

/// Incoming queue of subscribe and top mode (the reference cli's value).
const CLI_QUEUE_SIZE: usize = 4096;

/// Runs `psrt-cli` with the process arguments.
pub fn main() -> ExitCode {
    let raw = std::env::args_os().skip(1).collect();
    let args = match args::parse(raw) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("psrt-cli {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("psrt-cli: {e} (see psrt-cli --help)");
            return ExitCode::FAILURE;
        }
    };
    init_logging(args.verbose);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("psrt-cli: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: bool) {
    let level = if verbose {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let config = ConfigBuilder::new()
        .set_time_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .build();
    // Only fails if a logger is already set, which cannot happen here.
    let _ = WriteLogger::init(level, config, std::io::stderr());
}

fn run(args: &Args) -> Result<(), String> {
    let mut base = Config::new(&args.path)
        .set_auth(&args.user, &args.password)
        .set_timeout(args.timeout)
        .set_socket_wait_timeout(args.timeout)
        .set_tls(args.tls)
        .set_randomize(args.random_order)
        .set_reconnect_timeout(args.reconnect_timeout);
    if let Some(file) = &args.tls_ca {
        let pem = std::fs::read_to_string(file)
            .map_err(|e| format!("--tls-ca {}: {e}", file.display()))?;
        base = base.set_tls_ca(Some(pem));
    }
    match &args.mode {
        Mode::Publish { topic, message } => publish(base, topic, message),
        Mode::Subscribe { topics } => {
            let (client, stop) = connect_interruptible(base)?;
            subscribe::run(&client, topics, &stop)
        }
        Mode::Top { topics } => {
            let (client, stop) = connect_interruptible(base)?;
            top::run(&client, topics, &stop)
        }
        Mode::Benchmark {
            iterations,
            workers,
        } => benchmark::run(&base, *iterations, *workers),
    }
}

fn connect(config: &Config) -> Result<Client, String> {
    Client::connect(config).map_err(|e| format!("cannot connect to {}: {e}", config.path()))
}

fn publish(config: Config, topic: &str, message: &[u8]) -> Result<(), String> {
    log::debug!("msg.len = {}", message.len());
    let client = connect(&config.disable_data_stream())?;
    client
        .publish(DEFAULT_PRIORITY, topic, message)
        .map_err(|e| format!("publish to {topic:?}: {e}"))?;
    client.bye().map_err(|e| format!("bye: {e}"))
}

/// Connects with a data stream and sets a flag on SIGINT and SIGTERM.
fn connect_interruptible(config: Config) -> Result<(Client, Arc<AtomicBool>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| format!("cannot install the signal handler: {e}"))?;
    }
    let client = connect(&config.set_queue_size(CLI_QUEUE_SIZE))?;
    Ok((client, stop))
}

/// Subscribes to all topics in one request and takes the message receiver.
fn subscribe_all(client: &Client, topics: &[String]) -> Result<Receiver<Message>, String> {
    log::info!("Listening to {}", topics.join(", "));
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    client
        .subscribe_bulk(&refs)
        .map_err(|e| format!("subscribe: {e}"))?;
    client
        .take_receiver()
        .ok_or_else(|| "the client has no data stream".to_owned())
}

/// Why the message channel ended: the failover's verdict if it gave up
/// (no server within `--reconnect-timeout`, with the last address's
/// error), otherwise a lost connection.
fn connection_lost(client: &Client) -> String {
    match client.nop() {
        Err(e @ Error::Unavailable(_)) => format!("the connection to the server was lost; {e}"),
        _ => "the connection to the server was lost".to_owned(),
    }
}

/// After Ctrl-C: BYE and a clean exit.
fn interrupted_bye(client: &Client) -> Result<(), String> {
    log::info!("terminating");
    client.bye().map_err(|e| format!("bye: {e}"))
}

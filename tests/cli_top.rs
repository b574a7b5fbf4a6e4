//! `psrt-cli --top` at a real (pseudo-)terminal: totals and non-zero rates
//! of the topics being published, `s` switching the sort column (the rows
//! reorder), `q` and Ctrl-C ending it with exit 0, and the terminal's mode
//! (line editing, echo) put back as it was on both paths.

mod common;
mod pty;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Raw, Setup, TestServer};
use pty::{Pty, last_screen, wait_exit};

const WAIT: Duration = Duration::from_secs(10);

/// Starts top on a new pty; also returns the pty's mode from before.
fn start_top(server: &TestServer) -> (Pty, std::process::Child, (libc::tcflag_t, libc::cc_t)) {
    let pty = Pty::open(30, 120).expect("a pty");
    let before = pty.local_mode();
    let child = pty
        .spawn(
            Command::new(env!("CARGO_BIN_EXE_psrt-cli"))
                .arg(server.addr.to_string())
                .arg("--top"),
        )
        .expect("spawn psrt-cli --top");
    assert!(
        pty.wait_for("sorted by count; s: sort, q: quit", WAIT),
        "no first screen:\n{}",
        pty.text()
    );
    (pty, child, before)
}

/// The topic names of the rows of a screen, in order.
fn rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip(2)
        .take_while(|l| !l.starts_with("sorted by"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// The cells of `topic`'s row: count, msg/s, bytes (two cells), bytes/s.
fn row<'a>(screen: &'a str, topic: &str) -> Option<Vec<&'a str>> {
    let line = screen
        .lines()
        .find(|l| l.starts_with(&format!("{topic} ")))?;
    Some(line.split_whitespace().skip(1).collect())
}

const ICANON_ECHO: libc::tcflag_t = libc::ICANON | libc::ECHO;

#[test]
fn rates_sort_key_and_quit_restore_the_terminal() {
    // A roomy queue: under CPU contention the (debug) cli may fall behind
    // for a while, and must not lose its data socket as a slow consumer.
    let server = TestServer::with(Setup::default().tweak(|c| c.data_queue = 1_000_000));
    let (pty, mut child, (mode_before, _)) = start_top(&server);
    // While top runs: no line editing, no echo (it reads single keys).
    assert!(
        pty.wait_until(WAIT, |_| pty.local_mode().0 & ICANON_ECHO == 0),
        "top did not enter single-key mode"
    );

    // Many small messages on one topic, a few large ones on another, from
    // a thread, until the checks are done (so the rates stay non-zero
    // however slowly this machine runs the test).
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (mut client, _) = Raw::anonymous(server.addr);
        let publishing = Arc::clone(&publishing);
        std::thread::spawn(move || {
            let mut i = 0u32;
            while publishing.load(Ordering::Relaxed) {
                assert_eq!(client.publish("plant/busy", b"21.5"), 0x01);
                if i % 50 == 0 {
                    assert_eq!(client.publish("plant/blob", &[7u8; 20_000]), 0x01);
                }
                i += 1;
                // About 2000 messages a second: rates well above 0, and
                // little for the cli to catch up with if it is starved.
                if i % 2 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let busy_first = |text: &str| {
        let screen = last_screen(text);
        rows(&screen) == ["plant/busy", "plant/blob"]
            && row(&screen, "plant/busy").is_some_and(|cells| cells[1] != "0.0")
            && row(&screen, "plant/blob").is_some_and(|cells| cells[4] != "0")
    };
    assert!(
        pty.wait_until(WAIT, busy_first),
        "busy topic first, non-zero msg/s and bytes/s:\n{}",
        last_screen(&pty.text())
    );

    // s: msg/s, s: bytes — the large messages come first.
    pty.type_keys(b"s");
    assert!(pty.wait_for("sorted by msg/s", WAIT), "{}", pty.text());
    pty.type_keys(b"s");
    assert!(
        pty.wait_until(WAIT, |t| {
            let screen = last_screen(t);
            screen.contains("sorted by bytes;") && rows(&screen) == ["plant/blob", "plant/busy"]
        }),
        "sorted by bytes:\n{}",
        last_screen(&pty.text())
    );

    publishing.store(false, Ordering::Relaxed);
    publisher.join().expect("the publisher");
    pty.type_keys(b"q");
    assert_eq!(wait_exit(&mut child, WAIT), Some(0), "{}", pty.text());
    assert_eq!(pty.local_mode().0, mode_before, "the terminal mode is back");
    assert_eq!(mode_before & ICANON_ECHO, ICANON_ECHO);
}

#[test]
fn ctrl_c_ends_top_and_restores_the_terminal() {
    let server = TestServer::start();
    let (pty, mut child, before) = start_top(&server);
    assert!(pty.wait_until(WAIT, |_| pty.local_mode().0 & ICANON_ECHO == 0));
    // Ctrl-C through the line discipline: SIGINT to the foreground group.
    pty.type_keys(b"\x03");
    assert_eq!(wait_exit(&mut child, WAIT), Some(0), "{}", pty.text());
    assert!(pty.wait_for("terminating", WAIT), "{}", pty.text());
    assert_eq!(pty.local_mode(), before, "the terminal mode is back");
}

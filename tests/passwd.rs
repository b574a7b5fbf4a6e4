//! `psrtd passwd FILE USER`: the password file it writes is the one a real
//! psrtd logs users in with — two users added, one changed (the old
//! password then fails, at start and after a SIGHUP reload), one removed —
//! with mode 0640 for a new file, the mode kept on a rewrite, other lines
//! kept, the prompt at a terminal (twice, no echo, mismatch refused), and
//! readable errors that change nothing; Ctrl-C at the prompt changes
//! nothing either and puts the terminal back.

mod common;
mod pty;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Proc, Raw, TempDir, psrtd_bin, wait_count, write_config};
use pty::{Pty, wait_exit};

const WAIT: Duration = Duration::from_secs(10);
const ACL: &str = "alice:\n  sub: '#'\n  pub: '#'\nbob:\n  sub: '#'\n  pub: '#'\n";

/// `psrtd passwd ARGS` with `stdin` piped in (cost 4 keeps bcrypt fast).
fn passwd(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(psrtd_bin())
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psrtd passwd");
    // It may exit before reading (a bad argument): ignore a broken pipe.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().expect("psrtd passwd output")
}

fn set(file: &Path, user: &str, password: &str) {
    let out = passwd(
        &["--cost", "4", file.to_str().unwrap(), user],
        &format!("{password}\n"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(user) && stderr.contains("reload"),
        "{stderr}"
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Logs in as `user`; the server must accept it.
fn logs_in(addr: std::net::SocketAddr, user: &str, password: &str) {
    let (mut c, _) = Raw::control(addr, user, password);
    assert_eq!(c.nop(), 0x01, "{user} logged in");
}

#[test]
fn users_added_and_changed_log_in_and_old_passwords_fail() {
    let dir = TempDir::new("passwd-login");
    dir.write("acl.yml", ACL);
    let file = dir.path("psrt-passwd");
    set(&file, "alice", "alice-old");
    assert_eq!(mode(&file), 0o640, "a new file is 0640");
    set(&file, "bob", "bob-pw");
    set(&file, "alice", "alice-new");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.starts_with("alice:$2b$04$"),
        "alice keeps her line: {text}"
    );

    let config = write_config(&dir, "", "  password_file: psrt-passwd\n");
    let server = Proc::spawn(&["-C", config.to_str().unwrap()]);
    let addr = server.addr.expect("psrtd listening");
    logs_in(addr, "alice", "alice-new");
    logs_in(addr, "bob", "bob-pw");
    Raw::expect_login_refused(addr, "alice", "alice-old");

    // Changed while psrtd runs, applied by SIGHUP; the mode an operator
    // chose is kept by the rewrite.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    set(&file, "bob", "bob-new");
    assert_eq!(mode(&file), 0o600);
    let out = passwd(&["-D", file.to_str().unwrap(), "alice"], "");
    assert!(out.status.success(), "{out:?}");
    server.signal(1);
    assert!(
        wait_count(|| server.log_text(), "reload ok", 1, WAIT),
        "{}",
        server.log_text()
    );
    logs_in(addr, "bob", "bob-new");
    Raw::expect_login_refused(addr, "bob", "bob-pw");
    Raw::expect_login_refused(addr, "alice", "alice-new");
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.contains(".psrtd-passwd.")),
        "a temp file was left behind: {names:?}"
    );
}

#[test]
fn errors_are_clear_and_change_nothing() {
    let dir = TempDir::new("passwd-errors");
    let file = dir.path("psrt-passwd");
    let file_arg = file.to_str().unwrap();
    set(&file, "alice", "pw");
    let before = std::fs::read_to_string(&file).unwrap();
    let cases: &[(&[&str], &str, i32, &str)] = &[
        (&[file_arg, "a:b"], "pw\n", 1, "':' is not allowed"),
        (&[file_arg, "carol"], "", 1, "no password on stdin"),
        (&[file_arg, "carol"], "\n", 1, "the password is empty"),
        (
            &[file_arg, "carol"],
            &format!("{}\n", "x".repeat(73)),
            1,
            "72",
        ),
        (&["-D", file_arg, "nobody"], "", 1, "no user \"nobody\""),
        (&["--cost", "40", file_arg, "carol"], "pw\n", 2, "4 to 31"),
        (&[file_arg], "pw\n", 2, "expected FILE and USER"),
        (
            &["/nonexistent/dir/pw", "carol"],
            "pw\n",
            1,
            "does not exist",
        ),
        (
            &[dir.0.to_str().unwrap(), "carol"],
            "pw\n",
            1,
            "is a folder",
        ),
    ];
    for (args, stdin, code, needle) in cases {
        let out = passwd(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.starts_with("psrtd passwd: "), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);

    let help = passwd(&["--help"], "");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    for needle in [
        "FILE USER",
        "--cost",
        "-D",
        "0640",
        "without echo",
        "systemctl reload",
    ] {
        assert!(text.contains(needle), "help lacks {needle:?}:\n{text}");
    }
    let main_help = Command::new(psrtd_bin()).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&main_help.stdout).contains("psrtd passwd"));
}

/// At a terminal the password is asked twice and never echoed; two
/// different answers change nothing.
#[test]
fn terminal_prompt_asks_twice_without_echo() {
    let dir = TempDir::new("passwd-tty");
    let file = dir.path("psrt-passwd");
    // Types two answers; waits for exit and for the last line, `last`
    // (the pty's output is read by a thread, so it may lag the exit).
    let run = |first: &str, second: &str, last: &str| {
        let pty = Pty::open(24, 100).unwrap();
        let before = pty.local_mode();
        let mut child = pty
            .spawn(
                Command::new(psrtd_bin())
                    .args(["passwd", "--cost", "4"])
                    .arg(&file)
                    .arg("carol"),
            )
            .unwrap();
        assert!(
            pty.wait_for("New password for carol: ", WAIT),
            "{}",
            pty.text()
        );
        pty.type_keys(format!("{first}\r").as_bytes());
        assert!(
            pty.wait_for("Same password again: ", WAIT),
            "{}",
            pty.text()
        );
        pty.type_keys(format!("{second}\r").as_bytes());
        let code = wait_exit(&mut child, WAIT);
        assert!(pty.wait_for(last, WAIT), "{}", pty.text());
        let text = pty.text();
        assert!(
            !text.contains(first) && !text.contains(second),
            "echoed: {text}"
        );
        assert_eq!(pty.local_mode(), before, "the terminal mode is back");
        (code, text)
    };
    let (code, text) = run("typed-once", "typed-twice", "passwords differ");
    assert_eq!(code, Some(1), "{text}");
    assert!(!file.exists(), "nothing written on a mismatch");

    // Ctrl-C at the prompt: nothing written, the terminal put back.
    let pty = Pty::open(24, 100).unwrap();
    let before = pty.local_mode();
    let mut child = pty
        .spawn(
            Command::new(psrtd_bin())
                .arg("passwd")
                .arg(&file)
                .arg("carol"),
        )
        .unwrap();
    assert!(
        pty.wait_for("New password for carol: ", WAIT),
        "{}",
        pty.text()
    );
    pty.type_keys(b"half\x03");
    assert_eq!(wait_exit(&mut child, WAIT), Some(1), "{}", pty.text());
    assert!(pty.wait_for("cancelled", WAIT), "{}", pty.text());
    assert_eq!(pty.local_mode(), before);
    assert!(!file.exists());

    let (code, text) = run("s3cret-pw", "s3cret-pw", "added user carol");
    assert_eq!(code, Some(0), "{text}");
    let line = std::fs::read_to_string(&file).unwrap();
    let hash = line.trim().strip_prefix("carol:").expect("carol's line");
    assert!(bcrypt::verify("s3cret-pw", hash).unwrap());
}

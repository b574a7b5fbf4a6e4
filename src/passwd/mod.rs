//! `psrtd passwd [--cost N] [-D] FILE USER`: sets (or removes) a user's
//! bcrypt line in a psrtd password file, so a gateway needs no
//! `htpasswd` (apache2-utils). A subcommand of `psrtd` rather than of
//! `psrt-cli` because the password file belongs to the server: it is
//! installed where psrtd is (the Debian package, a static binary copied
//! to a gateway), next to `psrtd -t` that checks the result, and
//! `psrt-cli` keeps the reference cli's options and positional argument.
//!
//! The password is asked twice without echo when stdin is a terminal, and
//! is otherwise the first line of stdin (for scripts). `file.rs` does the
//! edit and the atomic rewrite.

mod file;

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::term::{self, STDIN};
use file::Change;

/// bcrypt cost when `--cost` is not given.
pub const DEFAULT_COST: u32 = 10;
/// Bytes read from a non-terminal stdin at most (a password line).
const MAX_STDIN: u64 = 1024;

/// `psrtd passwd --help`.
pub const HELP: &str = "\
psrtd passwd: set or remove a user's password in a psrtd password file

USAGE:
    psrtd passwd [--cost N] FILE USER     set USER's password (the line is added or replaced)
    psrtd passwd -D FILE USER             remove USER's line

When stdin is a terminal the password is asked twice, without echo. Otherwise
the first line of stdin is the password, for scripts:
    printf '%s\\n' \"$PASSWORD\" | psrtd passwd /etc/psrtd/psrt-passwd sensor1

OPTIONS:
        --cost N     bcrypt cost, 4 to 31 (default 10). Each step doubles the time of a
                     password check; psrtd checks a login once and then caches it, and
                     checks unknown users at the file's highest cost.
    -D, --delete     remove USER instead of setting a password
    -h, --help       this help

THE FILE:
    One line USER:HASH per user, as `htpasswd -B` writes it ($2b$ bcrypt). Other lines
    (users, comments) are kept as they are. The file is replaced atomically (a temp
    file in the same folder, then a rename) and keeps its mode and owner; a new file
    is created with mode 0640 (give its group to the user psrtd runs as). A symlink is
    followed and kept. USER may not contain ':', spaces or control characters, and may
    not start with '#'; the password must be 1 to 72 bytes (bcrypt ignores the rest).

    psrtd reads the file at start and on SIGHUP. After a change:
        sudo systemctl reload psrtd        (or: kill -HUP $(pidof psrtd))

EXAMPLES:
    sudo psrtd passwd /etc/psrtd/psrt-passwd operator
    sudo psrtd passwd --cost 12 /etc/psrtd/psrt-passwd admin
    sudo psrtd passwd -D /etc/psrtd/psrt-passwd sensor7

EXIT STATUS:
    0 done; 1 nothing changed (an error, a mismatch, Ctrl-C at the prompt); 2 bad arguments.
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    file: PathBuf,
    login: String,
    cost: u32,
    delete: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Args),
    Help,
}

/// Runs `psrtd passwd` with the arguments after `passwd`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("psrtd passwd: {e} (see psrtd passwd --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(done) => {
            eprintln!("psrtd passwd: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("psrtd passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse(raw: Vec<OsString>) -> Result<Parsed, String> {
    let mut p = pico_args::Arguments::from_vec(raw);
    if p.contains(["-h", "--help"]) {
        return Ok(Parsed::Help);
    }
    let delete = p.contains(["-D", "--delete"]);
    let cost: Option<u32> = p.opt_value_from_str("--cost").map_err(|e| e.to_string())?;
    if delete && cost.is_some() {
        return Err("--cost does not go with --delete".into());
    }
    let cost = cost.unwrap_or(DEFAULT_COST);
    if !(4..=31).contains(&cost) {
        return Err(format!("--cost must be 4 to 31, got {cost}"));
    }
    let rest = p.finish();
    if let Some(option) = rest.iter().find(|a| {
        a.to_str()
            .is_some_and(|a| a.starts_with('-') && a.len() > 1)
    }) {
        return Err(format!("unknown option {option:?}"));
    }
    let [file, login] = <[OsString; 2]>::try_from(rest).map_err(|rest| match rest.len() {
        0 | 1 => "expected FILE and USER".to_owned(),
        _ => format!("unexpected argument {:?} after FILE USER", rest[2]),
    })?;
    let login = login
        .into_string()
        .map_err(|l| format!("the user name {l:?} is not UTF-8"))?;
    Ok(Parsed::Run(Args {
        file: PathBuf::from(file),
        login,
        cost,
        delete,
    }))
}

fn run(args: &Args) -> Result<String, String> {
    file::check_login(&args.login)?;
    let path = file::resolve(&args.file)?;
    // Fail on an unreadable file or a missing folder before asking.
    file::read(&path)?;
    let hash = if args.delete {
        None
    } else {
        let password = read_password(&args.login)?;
        file::check_password(&password)?;
        Some(bcrypt::hash(&password, args.cost).map_err(|e| format!("bcrypt: {e}"))?)
    };
    // Read again: the prompt may have taken a while.
    let old = file::read(&path)?;
    let (text, change) = file::set_line(
        old.as_deref().unwrap_or_default(),
        &args.login,
        hash.as_deref(),
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    file::rewrite(&path, &text)?;
    let (what, preposition) = match change {
        Change::Added => ("added user", "to"),
        Change::Replaced => ("changed the password of", "in"),
        Change::Removed => ("removed user", "from"),
    };
    let created = if old.is_none() {
        format!(" (a new file, mode {:04o})", file::NEW_FILE_MODE)
    } else {
        String::new()
    };
    Ok(format!(
        "{what} {} {preposition} {}{created}; reload psrtd to apply it \
         (systemctl reload psrtd, or SIGHUP)",
        args.login,
        path.display()
    ))
}

/// The password: typed twice at a terminal, or stdin's first line.
fn read_password(login: &str) -> Result<Vec<u8>, String> {
    if !term::is_tty(STDIN) {
        return stdin_line();
    }
    let no_tty = |e| format!("cannot read the password from the terminal: {e}");
    let input = term::HiddenInput::open().map_err(no_tty)?;
    let ask = |prompt: &str| {
        input
            .ask(prompt)
            .map_err(no_tty)?
            .ok_or_else(|| "cancelled, nothing changed".to_owned())
    };
    let first = ask(&format!("New password for {login}: "))?;
    file::check_password(&first)?;
    let again = ask("Same password again: ")?;
    if first != again {
        return Err("the two passwords differ, nothing changed".into());
    }
    Ok(first)
}

/// The first line of stdin, without its `\n` or `\r\n`.
fn stdin_line() -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    io::stdin()
        .lock()
        .take(MAX_STDIN)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    first_line(&buf)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "no password on stdin (give it as the first line)".to_owned())
}

/// The first line of `input` without its line ending; `None` if there is
/// no input or the line does not end within it (longer than [`MAX_STDIN`]
/// means it was cut).
fn first_line(input: &[u8]) -> Option<&[u8]> {
    if input.is_empty() {
        return None;
    }
    let line = match input.iter().position(|&b| b == b'\n') {
        Some(end) => &input[..end],
        None if input.len() as u64 >= MAX_STDIN => return None,
        None => input,
    };
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parsed(&["/etc/psrtd/psrt-passwd", "op"]),
            Ok(Parsed::Run(Args {
                file: "/etc/psrtd/psrt-passwd".into(),
                login: "op".into(),
                cost: DEFAULT_COST,
                delete: false,
            }))
        );
        let Ok(Parsed::Run(a)) = parsed(&["--cost", "4", "f", "u"]) else {
            panic!()
        };
        assert_eq!(a.cost, 4);
        let Ok(Parsed::Run(a)) = parsed(&["f", "u", "-D"]) else {
            panic!()
        };
        assert!(a.delete);
        assert_eq!(parsed(&["-h"]), Ok(Parsed::Help));
        assert_eq!(parsed(&["f", "--help"]), Ok(Parsed::Help));
        for bad in [
            &[][..],
            &["f"],
            &["f", "u", "x"],
            &["--cost", "3", "f", "u"],
            &["--cost", "32", "f", "u"],
            &["--cost", "ten", "f", "u"],
            &["--cost", "12", "-D", "f", "u"],
            &["-x", "f", "u"],
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stdin_first_line() {
        assert_eq!(first_line(b"pw\n"), Some(&b"pw"[..]));
        assert_eq!(first_line(b"pw\r\nignored\n"), Some(&b"pw"[..]));
        assert_eq!(first_line(b"no newline"), Some(&b"no newline"[..]));
        assert_eq!(first_line(b"\n"), Some(&b""[..]));
        assert_eq!(first_line(b""), None);
        assert_eq!(first_line(&[b'x'; MAX_STDIN as usize]), None);
        assert!(HELP.contains("--cost") && HELP.contains("0640"));
    }
}

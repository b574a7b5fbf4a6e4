//! The password-file edits of `psrtd passwd`: which line is a user's (the
//! server's own rule, as `Passwords::parse` reads the file), the new text
//! with that line replaced, added or removed and every other line kept byte
//! for byte, and the atomic rewrite: a temp file in the same folder with the
//! old file's mode and owner (a new file: mode 0640), fsync, rename, fsync
//! of the folder. A reader (psrtd's reload) sees the old file or the new
//! one, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a password file this tool creates: owner read/write, group read
/// (give the group to the user psrtd runs as), nobody else.
pub(crate) const NEW_FILE_MODE: u32 = 0o640;
/// Longest login accepted (a PSRT login frame carries login and password
/// in at most 1024 bytes).
const MAX_LOGIN: usize = 256;
/// bcrypt uses the first 72 bytes of a password and ignores the rest.
pub(crate) const MAX_PASSWORD: usize = 72;

/// What happened to the user's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Added,
    Replaced,
    Removed,
}

/// Refuses logins the server could never match or a client never send.
pub(crate) fn check_login(login: &str) -> Result<(), String> {
    if login.is_empty() {
        return Err("the user name is empty".into());
    }
    if login.len() > MAX_LOGIN {
        return Err(format!("the user name is longer than {MAX_LOGIN} bytes"));
    }
    if login == "_" {
        return Err("\"_\" is the ACL entry of anonymous clients, not a login".into());
    }
    if login.starts_with('#') {
        return Err(format!(
            "user {login:?}: a line starting with '#' is a comment in the password file"
        ));
    }
    if let Some(c) = login
        .chars()
        .find(|&c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "user {login:?}: {c:?} is not allowed in a user name (no ':', spaces or control characters)"
        ));
    }
    Ok(())
}

/// Refuses passwords no client can log in with, or that bcrypt would cut.
pub(crate) fn check_password(password: &[u8]) -> Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is {} bytes long; bcrypt uses only the first {MAX_PASSWORD}",
            password.len()
        ));
    }
    if password.contains(&0) {
        return Err("the password contains a NUL byte (a PSRT login cannot carry it)".into());
    }
    Ok(())
}

/// The login of a password-file line, by the server's rule: the trimmed
/// line splits on `:` into exactly two parts, and the trimmed first part is
/// not empty and does not start with `#`.
fn line_login(line: &str) -> Option<&str> {
    let line = line.trim();
    let (login, hash) = line.split_once(':')?;
    if hash.contains(':') {
        return None;
    }
    let login = login.trim();
    (!login.is_empty() && !login.starts_with('#')).then_some(login)
}

/// The file text with `login`'s line set to `login:hash` (`Some`) or
/// removed (`None`). A replaced line keeps its place and line ending; any
/// further line of the same login (the server would take the last one) is
/// dropped; a new line goes at the end. Every other line is kept as it is.
pub(crate) fn set_line(
    text: &str,
    login: &str,
    hash: Option<&str>,
) -> Result<(String, Change), String> {
    let mut out = String::with_capacity(text.len() + login.len() + 64);
    let mut found = false;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        if line_login(content) != Some(login) {
            out.push_str(line);
            continue;
        }
        if let (Some(hash), false) = (hash, found) {
            out.push_str(login);
            out.push(':');
            out.push_str(hash);
            out.push_str(&line[content.len()..]);
        }
        found = true;
    }
    match (hash, found) {
        (Some(_), true) => Ok((out, Change::Replaced)),
        (None, true) => Ok((out, Change::Removed)),
        (None, false) => Err(format!("there is no user {login:?} in the file")),
        (Some(hash), false) => {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(login);
            out.push(':');
            out.push_str(hash);
            out.push('\n');
            Ok((out, Change::Added))
        }
    }
}

/// The file a path names: itself, or the file a symlink points to (so the
/// rewrite replaces the target and keeps the link).
pub(crate) fn resolve(path: &Path) -> Result<PathBuf, String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)
            .map_err(|e| format!("{}: cannot follow the symlink: {e}", path.display())),
        Ok(meta) if meta.is_dir() => Err(format!("{} is a folder, not a file", path.display())),
        _ => Ok(path.to_path_buf()),
    }
}

/// The file's text, or `None` if it does not exist yet (its folder must).
pub(crate) fn read(path: &Path) -> Result<Option<String>, String> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
            format!(
                "{} is not UTF-8 text (not a password file?)",
                path.display()
            )
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let dir = folder(path);
            if dir.is_dir() {
                Ok(None)
            } else {
                Err(format!(
                    "{}: the folder {} does not exist",
                    path.display(),
                    dir.display()
                ))
            }
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces the file at `path` (already [`resolve`]d) with `text`
/// atomically, keeping its mode and owner; a new file gets
/// [`NEW_FILE_MODE`] and the caller's owner.
pub(crate) fn rewrite(path: &Path, text: &str) -> Result<(), String> {
    let old = match fs::metadata(path) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => Err(format!("{}: {e}", path.display()))?,
    };
    let dir = folder(path);
    let (temp, file) = create_temp(path, dir)?;
    let result = fill(&file, text, old.as_ref())
        .map_err(|e| format!("{}: {e}", temp.display()))
        .and_then(|()| {
            fs::rename(&temp, path).map_err(|e| {
                format!(
                    "cannot rename {} to {}: {e}",
                    temp.display(),
                    path.display()
                )
            })
        });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // The rename is durable once the folder is synced; the new file is in
    // place either way, so a failure here is not an error.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A new file next to `path`, readable by its owner only until [`fill`]
/// gives it its final mode.
fn create_temp(path: &Path, dir: &Path) -> Result<(PathBuf, File), String> {
    let name = path
        .file_name()
        .map_or_else(|| "passwd".into(), |n| n.to_string_lossy());
    for attempt in 0..100u32 {
        let temp = dir.join(format!(
            ".{name}.psrtd-passwd.{}.{attempt}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "cannot create a temporary file in {}: {e} (the file is replaced by a rename, \
                     so its folder must be writable: run as root or as the folder's owner)",
                    dir.display()
                ));
            }
        }
    }
    Err(format!(
        "cannot create a temporary file in {}: 100 names taken",
        dir.display()
    ))
}

/// Writes `text`, gives the file the old file's owner and mode (or
/// [`NEW_FILE_MODE`]), and syncs it.
fn fill(file: &File, text: &str, old: Option<&fs::Metadata>) -> Result<(), String> {
    let mut writer = file;
    writer
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let mode = old.map_or(NEW_FILE_MODE, |m| m.permissions().mode() & 0o7777);
    if let Some(old) = old {
        let mine = file.metadata().map_err(|e| e.to_string())?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).map_err(|e| {
                format!(
                    "cannot keep the owner {}:{} of the old file: {e} (run as root or as the file's owner)",
                    old.uid(),
                    old.gid()
                )
            })?;
        }
    }
    // After the chown, which may clear set-id bits.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Passwords;

    const H1: &str = "$2b$04$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const H2: &str = "$2y$10$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn hash_of(text: &str, login: &str) -> Option<String> {
        let (p, _) = Passwords::parse(text);
        p.get(login).map(|e| e.hash.to_string())
    }

    #[test]
    fn lines_added_replaced_removed_others_kept() {
        let (text, change) = set_line("", "alice", Some(H1)).unwrap();
        assert_eq!(
            (text.as_str(), change),
            (&*format!("alice:{H1}\n"), Change::Added)
        );

        let old = format!(
            "# users\r\n\nalice:{H2}\r\n  bob : {H2}\n#carol:{H1}\nodd:line:here\nzed:{H2}"
        );
        let (text, change) = set_line(&old, "bob", Some(H1)).unwrap();
        assert_eq!(change, Change::Replaced);
        assert_eq!(
            text,
            format!("# users\r\n\nalice:{H2}\r\nbob:{H1}\n#carol:{H1}\nodd:line:here\nzed:{H2}")
        );
        // The server reads what was meant; the others are untouched.
        assert_eq!(hash_of(&text, "bob").as_deref(), Some(H1));
        assert_eq!(hash_of(&text, "alice").as_deref(), Some(H2));
        assert_eq!(hash_of(&text, "zed").as_deref(), Some(H2));

        // A comment or a line that is not login:hash is never a user's.
        let (text, change) = set_line(&old, "carol", Some(H1)).unwrap();
        assert_eq!(change, Change::Added);
        assert!(text.starts_with(&old) && text.ends_with(&format!("\ncarol:{H1}\n")));
        let (text, _) = set_line(&old, "odd", Some(H1)).unwrap();
        assert!(text.contains("odd:line:here\n") && text.ends_with(&format!("odd:{H1}\n")));

        let (text, change) = set_line(&old, "alice", None).unwrap();
        assert_eq!(change, Change::Removed);
        assert_eq!(
            text,
            format!("# users\r\n\n  bob : {H2}\n#carol:{H1}\nodd:line:here\nzed:{H2}")
        );
        assert!(
            set_line(&old, "nobody", None)
                .unwrap_err()
                .contains("nobody")
        );
    }

    #[test]
    fn duplicate_lines_collapse_to_one() {
        let old = format!("a:{H2}\nb:{H2}\na:{H2}\n");
        let (text, _) = set_line(&old, "a", Some(H1)).unwrap();
        assert_eq!(text, format!("a:{H1}\nb:{H2}\n"));
        let (text, _) = set_line(&old, "a", None).unwrap();
        assert_eq!(text, format!("b:{H2}\n"));
    }

    #[test]
    fn logins_and_passwords_checked() {
        for good in ["alice", "sensor-1", "op.eu@site", "zürich"] {
            assert_eq!(check_login(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "_",
            "#x",
            "a:b",
            "a b",
            "a\tb",
            "a\nb",
            &"x".repeat(300),
        ] {
            assert!(check_login(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_password(b"x"), Ok(()));
        assert_eq!(check_password(&[b'x'; 72]), Ok(()));
        assert!(check_password(&[b'x'; 73]).unwrap_err().contains("72"));
        assert!(check_password(b"").is_err());
        assert!(check_password(b"a\0b").is_err());
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("psrt-passwd-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rewrite_creates_0640_then_keeps_mode_and_symlinks() {
        let dir = temp_dir("rewrite");
        let path = dir.join("psrt-passwd");
        assert_eq!(read(&path), Ok(None));
        rewrite(&path, "a:x\n").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), NEW_FILE_MODE);
        assert_eq!(read(&path).unwrap().as_deref(), Some("a:x\n"));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let target = resolve(&link).unwrap();
        rewrite(&target, "a:y\n").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "a:y\n");
        assert_eq!(mode(&path), 0o600, "the mode is kept");
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        assert!(resolve(&dir).unwrap_err().contains("folder"));
        assert!(
            read(&dir.join("missing/psrt-passwd"))
                .unwrap_err()
                .contains("does not exist")
        );
        fs::write(dir.join("binary"), [0xff, 0xfe]).unwrap();
        assert!(read(&dir.join("binary")).unwrap_err().contains("UTF-8"));
        fs::remove_dir_all(&dir).unwrap();
    }
}

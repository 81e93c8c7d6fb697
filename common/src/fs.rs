//! State files, written the one safe way (DESIGN.md section 9): a state directory made 0700
//! and never reached through a symlink; files opened with `O_NOFOLLOW`; replacements written
//! to a fresh temporary (`O_CREAT|O_EXCL|O_NOFOLLOW`, a name nobody can plant in advance)
//! and renamed over the target, the temporary removed whatever fails. The journal, the
//! scheduler's record and state, the metrics file and the status page all write through
//! here, so a planted symlink cannot make root overwrite a file of someone else's choosing.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How much a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Readers see the old file or the new one; a crash may lose the new one (files made
    /// again at every start: the metrics file, the status page).
    Atomic,
    /// Also on disk before the call returns: the file fsynced before the rename, the
    /// directory after it.
    Durable,
}

/// Makes `dir` (and missing parents) and makes sure that `dir` itself is a real directory,
/// not a symlink, mode 0700 when this call created it. An existing directory keeps its mode
/// (an operator may have opened it on purpose), but one that others can write is refused:
/// whoever can write it could plant files for root to follow.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) => check_dir(dir, &m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)?;
            }
            match DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => {
                    // the mode given to mkdir is cut by the umask; 0700 is what we mean
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    check_dir(dir, &fs::symlink_metadata(dir)?)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn check_dir(dir: &Path, m: &fs::Metadata) -> io::Result<()> {
    if m.file_type().is_symlink() {
        return Err(io::Error::other(format!(
            "{} is a symbolic link, not a directory",
            dir.display()
        )));
    }
    if !m.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // sticky directories (/tmp) protect their entries; others must not be writable by others
    if m.mode() & 0o002 != 0 && m.mode() & 0o1000 == 0 {
        return Err(io::Error::other(format!(
            "{} is writable by every user (mode {:o}); make it 0700",
            dir.display(),
            m.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens `path` to append, creating it 0600; never through a symlink (`ELOOP`).
pub fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

/// Opens `path` to read; never through a symlink (`ELOOP`).
pub fn open_read(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nofollow())
        .open(path)
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// A temporary file beside `path`, created `O_EXCL|O_NOFOLLOW` with mode `mode` under a
/// name of this process and a counter (`.<name>.<pid>.<n>.tmp`: hidden, and not matched by
/// `*.prom` or `*.journal`). A name already taken (a leftover, or planted) is skipped.
pub fn create_temp(path: &Path, mode: u32) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    for _ in 0..100 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc_o_nofollow())
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary file name",
    ))
}

/// Replaces `path` with what `fill` writes, so that a reader sees the old file or the new
/// one, never a part: a fresh temporary (see [`create_temp`]) renamed over `path`. The
/// temporary is removed when anything fails (no partial `.tmp` is left behind). `mode` is
/// the new file's mode (cut by the umask).
pub fn replace_with(
    path: &Path,
    mode: u32,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let (tmp, mut f) = create_temp(path, mode)?;
    let result = (|| {
        fill(&mut f)?;
        if durability == Durability::Durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)?;
        if durability == Durability::Durable {
            sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// [`replace_with`] for bytes already in memory.
pub fn write_atomic(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durability: Durability,
) -> io::Result<()> {
    replace_with(path, mode, durability, |f| f.write_all(bytes))
}

/// fsyncs a directory, so that a create or a rename in it is on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn private_dir_is_0700_whatever_the_umask() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/state");
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { nix::libc::umask(0) };
        let r = private_dir(&d);
        // SAFETY: as above; it puts the old mask back.
        unsafe { nix::libc::umask(old) };
        r.unwrap();
        let mode = fs::metadata(&d).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        // again: an existing private directory is fine
        private_dir(&d).unwrap();
    }

    #[test]
    fn private_dir_refuses_a_symlink_and_a_world_writable_dir() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = t.path().join("link");
        symlink(&real, &link).unwrap();
        let e = private_dir(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&real).unwrap_err();
        assert!(e.to_string().contains("writable by every user"), "{e}");
    }

    #[test]
    fn open_append_does_not_follow_a_planted_symlink() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, "IMPORTANT").unwrap();
        let p = t.path().join("x.journal");
        symlink(&victim, &p).unwrap();
        let e = open_append(&p).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ELOOP));
        assert!(open_read(&p).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "IMPORTANT");
    }

    #[test]
    fn write_atomic_replaces_and_ignores_planted_temporaries() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, "IMPORTANT").unwrap();
        let p = t.path().join("bosun.prom");
        // plant the old fixed temporary names and a few of the new kind
        symlink(&victim, t.path().join(".bosun.prom.tmp")).unwrap();
        for n in 0..5 {
            let name = format!(".bosun.prom.{}.{n}.tmp", std::process::id());
            symlink(&victim, t.path().join(name)).unwrap();
        }
        write_atomic(&p, b"new", 0o644, Durability::Durable).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "IMPORTANT");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_failed_fill_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        fs::write(&p, "old").unwrap();
        let e = replace_with(&p, 0o600, Durability::Atomic, |_| {
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "disk full");
        assert_eq!(fs::read_to_string(&p).unwrap(), "old");
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("f")]);
    }
}

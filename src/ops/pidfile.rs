//! `PidFile`: a pid file that is written atomically, locked while the server runs, and removed
//! on exit.
//!
//! The lock (`flock`, held on an open file for the process's lifetime) is what says "running",
//! not the file's existence: a file left behind by a crash is unlocked and is simply replaced.
//! The pid is written to a temporary file that is locked first and then renamed (or linked)
//! into place, so a reader never sees an empty or half-written pid file, and the lock is on
//! the inode the path names from the first instant. Two instances starting at once are
//! serialised by the lock on the old file plus an inode check after taking it.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::sys::fs::try_lock_exclusive;

/// A locked pid file, removed when dropped.
#[derive(Debug)]
pub(super) struct PidFile {
    /// Where it is.
    path: PathBuf,
    /// The open, locked file; the lock lives as long as this descriptor (and any fork's copy).
    file: File,
}

/// Why a pid file could not be taken.
#[derive(Debug)]
pub(super) enum PidFileError {
    /// Another live process holds the lock.
    Running { path: PathBuf, pid: Option<u32> },
    /// The file system refused.
    Io { path: PathBuf, source: io::Error },
}

impl fmt::Display for PidFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PidFileError::Running {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "already running: pid file {} is locked by process {pid}",
                path.display()
            ),
            PidFileError::Running { path, pid: None } => write!(
                f,
                "already running: pid file {} is locked by another process",
                path.display()
            ),
            PidFileError::Io { path, source } => {
                write!(f, "cannot write pid file {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for PidFileError {}

impl PidFile {
    /// Takes `path` for this process: refuses if another process holds its lock, replaces a
    /// stale file, and writes this process's pid.
    pub(super) fn create(path: &Path) -> Result<PidFile, PidFileError> {
        let io_err = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        let pid = std::process::id();
        let tmp = temp_path(path, pid);
        // A leftover with our pid cannot belong to a live process: it is ours to replace.
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io_err)?;
        let result = (|| {
            // A fresh file: nobody else can hold its lock.
            try_lock_exclusive(file.as_fd()).map_err(io_err)?;
            (&file)
                .write_all(format!("{pid}\n").as_bytes())
                .map_err(io_err)?;
            install(path, &tmp)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| PidFile {
            path: path.to_owned(),
            file,
        })
    }
}

/// Moves the locked temporary file to `path`, unless a live process holds the current one.
fn install(path: &Path, tmp: &Path) -> Result<(), PidFileError> {
    let io_err = |source| PidFileError::Io {
        path: path.to_owned(),
        source,
    };
    // Bounded: each retry means another process replaced the file under us in between.
    for _ in 0..16 {
        let existing = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `link` fails if someone created the file meanwhile: then look again.
                match fs::hard_link(tmp, path) {
                    Ok(()) => {
                        let _ = fs::remove_file(tmp);
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(io_err(e)),
        };
        if !try_lock_exclusive(existing.as_fd()).map_err(io_err)? {
            return Err(PidFileError::Running {
                path: path.to_owned(),
                pid: read_pid(path),
            });
        }
        // We hold the lock on a stale file. If the path still names it, nobody else can be
        // replacing it now (they would need this lock), so replace it; otherwise retry.
        if same_file(&existing, path).map_err(io_err)? {
            fs::rename(tmp, path).map_err(io_err)?;
            return Ok(());
        }
    }
    Err(io_err(io::Error::other(
        "the pid file kept changing while being replaced",
    )))
}

fn temp_path(path: &Path, pid: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{pid}.tmp"))
}

fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pid recorded in `path`, if it holds one.
pub(super) fn read_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Remove the file only if it is still ours (an operator may have replaced it).
        if same_file(&self.file, &self.path).unwrap_or(false) {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove pid file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "reactor-pool-pidfile-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn second_taker_is_refused_and_stale_files_are_replaced() {
        let dir = scratch_dir("lock");
        let path = dir.join("server.pid");
        let first = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        // flock locks belong to the open file, so a second open in the same process conflicts
        // just as another process's would.
        match PidFile::create(&path) {
            Err(PidFileError::Running { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Running, got {other:?}"),
        }
        drop(first);
        assert!(!path.exists(), "removed on drop");
        fs::write(&path, "999999\n").unwrap();
        let again = PidFile::create(&path).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        drop(again);
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "no temporary files left: {left:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

//! The master's pid file: locked (flock) for the master's whole life, so a second pounce with
//! the same pid file refuses to start instead of binding the same ports through SO_REUSEPORT
//! and taking over the file; `pounce -s` signals only a pid whose file is still locked. The
//! file is written once the lock is held and removed at exit by its owner only.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A pid file this process holds locked.
pub struct PidFile {
    path: PathBuf,
    file: File,
}

fn flock(f: &File, op: libc::c_int) -> io::Result<()> {
    // SAFETY: flock(2) on a descriptor the File owns.
    if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The pid written in `file` (whatever it holds, for messages).
fn read_pid(mut file: &File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    text.trim().to_string()
}

impl PidFile {
    /// Creates (if needed) and locks `path`, then writes this process's id into it. If
    /// another process holds it, nothing is changed and the error says who.
    pub fn acquire(path: &Path) -> Result<PidFile, String> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Not truncated before the lock is held: the file may be someone else's.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open pid file \"{}\": {}", path.display(), e))?;
        if let Err(e) = flock(&file, libc::LOCK_EX) {
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                format!(
                    "pid file \"{}\" is locked by a running pounce (pid {}): it is already running; stop it first (pounce -s stop) or give this one another \"pid\"",
                    path.display(),
                    read_pid(&file)
                )
            } else {
                format!("cannot lock pid file \"{}\": {}", path.display(), e)
            });
        }
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(format!("{}\n", std::process::id()).as_bytes())
        };
        write(&mut file).map_err(|e| format!("cannot write pid file \"{}\": {}", path.display(), e))?;
        Ok(PidFile { path: path.to_path_buf(), file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    /// Removed while still locked, and only if the path still names our file.
    fn drop(&mut self) {
        let ours = match (std::fs::metadata(&self.path), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid of the running master whose pid file is `path`: the file must exist and be locked
/// (a stale file left by a crash names a pid that may belong to anyone by now).
pub fn running_pid(path: &Path) -> Result<i32, String> {
    let file = File::open(path).map_err(|e| format!("cannot read pid file \"{}\": {}", path.display(), e))?;
    let text = read_pid(&file);
    let pid: i32 = text.parse().ok().filter(|&p| p > 0).ok_or_else(|| format!("invalid PID number \"{}\" in \"{}\"", text, path.display()))?;
    match flock(&file, libc::LOCK_SH) {
        // We could lock it: nobody holds it, so no pounce runs with it.
        Ok(()) => Err(format!("no pounce is running with pid file \"{}\" (it names pid {}, but is not locked: a stale file)", path.display(), pid)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(pid),
        Err(e) => Err(format!("cannot check the lock on pid file \"{}\": {}", path.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_and_its_pid() {
        let dir = std::env::temp_dir().join(format!("pounce-pid-{}", std::process::id()));
        let path = dir.join("sub/p.pid");
        let held = PidFile::acquire(&path).expect("first");
        assert_eq!(std::fs::read_to_string(&path).expect("read").trim(), std::process::id().to_string());
        // flock locks belong to the open file: a second open in this process conflicts too.
        let second = PidFile::acquire(&path).err().expect("second refused");
        assert!(second.contains("locked by a running pounce"), "{second}");
        assert!(std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == std::process::id().to_string()), "left as it was");
        assert_eq!(running_pid(&path), Ok(std::process::id() as i32));
        drop(held);
        assert!(!path.exists(), "removed by its holder");
        std::fs::write(&path, "12345\n").expect("stale");
        assert!(running_pid(&path).err().is_some_and(|e| e.contains("stale")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

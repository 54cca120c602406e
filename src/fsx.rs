//! File-system helpers every writer uses: atomic writes (temp name + fsync + rename, so a killed job never
//! leaves a file that reads as valid), SHA-256 of files and bytes, and I/O errors that name their path.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Result alias of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// File-system failures. Every other module wraps this one (`#[from]`), so an I/O error keeps its path and
/// its advice wherever it surfaces. Messages are lower-case, carry the path, and say what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error on a named path. The OS reason is the source, printed after it in the error chain.
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Out of space while writing: the disk is full, or a quota or file-size limit was reached.
    #[error(
        "{action} `{path}`: out of space (disk full, or a quota or file-size limit); free space or write \
         elsewhere, then re-run the same command"
    )]
    NoSpace {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file that does not parse or does not match its schema.
    #[error("cannot parse `{path}`")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A folder another process is writing (its [`DirLock`] is held).
    #[error("`{dir}` is being written by {holder}; wait for it to finish, or write elsewhere")]
    Locked { dir: PathBuf, holder: String },
    /// The lock file was replaced under us more often than a fair race explains.
    #[error("`{dir}` keeps changing hands between other writers; try again")]
    LockContended { dir: PathBuf },
    /// A data path that is a directory, FIFO, socket or device.
    #[error("`{path}` is {what}; expected a regular data file")]
    NotRegular { path: PathBuf, what: &'static str },
}

impl Error {
    /// An I/O error on `path`; out-of-space errors (ENOSPC, EDQUOT, EFBIG) become [`Error::NoSpace`], which
    /// says what to do about them.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        const EFBIG: i32 = 27;
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        match source.raw_os_error() {
            Some(EFBIG | ENOSPC | EDQUOT) => Error::NoSpace { action, path: path.into(), source },
            _ => Error::Io { action, path: path.into(), source },
        }
    }
}

/// The temporary name used while `path` is being written: same directory (so the rename is atomic), a
/// name no reader looks for (`.<file>.tmp.<pid>`).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, then rename.
/// A disk-full or any other write error removes the temp file and leaves an existing `path` untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], but the content is produced by `fill` writing into the temp file.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all(dir)?;
    }
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("cannot write", path, e));
    }
    Ok(())
}

/// Whether `name` is a temporary name [`temp_path`] makes (`.<file>.tmp.<pid>`), and the pid in it.
fn temp_pid(name: &str) -> Option<u32> {
    let (stem, pid) = name.strip_prefix('.')?.rsplit_once(".tmp.")?;
    (!stem.is_empty()).then_some(())?;
    pid.parse().ok()
}

/// Whether process `pid` is running. Where `/proc` is missing (not Linux) every other process counts as gone,
/// which is safe wherever the caller holds the directory's [`DirLock`].
fn process_alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files (`.<file>.tmp.<pid>`) that killed runs left in `dir`: those whose process is
/// gone. Returns how many were removed. A missing `dir` has none.
pub fn remove_stale_temps(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("cannot list", dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = temp_pid(&name).is_some_and(|pid| !process_alive(pid));
        if stale && entry.file_type().is_ok_and(|t| t.is_file()) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| Error::io("cannot remove stale temporary file", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::debug!(dir = %dir.display(), removed, "removed temporary files of killed runs");
    }
    Ok(removed)
}

/// Name of the lock file a writer holds in its output directory.
pub const LOCK_FILE: &str = ".huescan.lock";

/// An exclusive lock on an output directory, held while a command writes into it, so a second writer is
/// refused instead of interleaving files. It is an OS lock (`flock`) on `<dir>/.huescan.lock`, which names the
/// holder while it is held and is removed on release, so a finished tree holds no lock file. A killed holder
/// releases the OS lock at once; the file it leaves is removed by the next run that takes the lock.
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Locks `dir` (created if needed) for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<DirLock> {
        use fs2::FileExt;
        create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        // A holder removes the file as it releases it; a lock won on the removed file's inode is retried on
        // the new one, so two writers never both hold "the" lock.
        for _ in 0..8 {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io("cannot open lock file", &path, e))?;
            if file.try_lock_exclusive().is_err() {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process" } else { holder };
                return Err(Error::Locked { dir: dir.to_path_buf(), holder: holder.to_string() });
            }
            if !same_file(&file, &path) {
                continue;
            }
            let who = format!("huescan {command} (pid {})\n", std::process::id());
            file.set_len(0)
                .and_then(|()| file.write_all(who.as_bytes()))
                .map_err(|e| Error::io("cannot write", &path, e))?;
            return Ok(DirLock { file, path });
        }
        Err(Error::LockContended { dir: dir.to_path_buf() })
    }

    /// Removes the lock file a killed holder left, where that is possible without waiting; best effort
    /// (read-only media keep it), so reading a finished tree never fails for it.
    pub fn tidy(dir: &Path) {
        use fs2::FileExt;
        let path = dir.join(LOCK_FILE);
        if !path.is_file() {
            return;
        }
        if let Ok(file) = fs::OpenOptions::new().read(true).open(&path) {
            if file.try_lock_exclusive().is_ok() && same_file(&file, &path) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        use fs2::FileExt;
        // Removed while still locked, so whoever opens the path next gets a new file.
        let _ = fs::remove_file(&self.path);
        let _ = FileExt::unlock(&self.file);
    }
}

/// Whether the open `file` is still the file at `path` (not removed or replaced meanwhile).
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// Opens `path` for reading as data, refusing anything but a regular file: a FIFO would block the open
/// forever, a directory gives an OS error that names no cause ("No such device" from mmap).
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = fs::metadata(path).map_err(|e| Error::io("cannot open", path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(Error::NotRegular { path: path.to_path_buf(), what });
    }
    File::open(path).map_err(|e| Error::io("cannot open", path, e))
}

pub fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))
}

/// Reads a regular file whole (see [`open_regular`]).
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    open_regular(path)?.read_to_end(&mut bytes).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(bytes)
}

/// Reads a regular UTF-8 text file whole (see [`open_regular`]).
pub fn read_to_string(path: &Path) -> Result<String> {
    let mut text = String::new();
    open_regular(path)?.read_to_string(&mut text).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(text)
}

/// Reads and deserialises a JSON file, naming the file in any error.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_to_string(path)?;
    serde_json::from_str(&text).map_err(|source| Error::Json { path: path.to_path_buf(), source })
}

/// Serialises `value` as pretty JSON (trailing newline) and writes it atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("serialising plain data cannot fail");
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("cannot read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_is_the_fips_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("huescan-fsx-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // pid 0 is never a user process; our own temp files belong to a live writer.
        let dead = dir.join(".layer_000.safetensors.tmp.0");
        let live = temp_path(&dir.join("hue_000.png"));
        let plain = dir.join("layer_000.safetensors");
        for f in [&dead, &live, &plain] {
            fs::write(f, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(&dir).unwrap(), 1);
        assert!(!dead.exists() && live.exists() && plain.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_lock_names_the_holder_and_release_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("huescan-fsx-lock-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let held = DirLock::acquire(&dir, "extract").unwrap();
        let e = DirLock::acquire(&dir, "extract").err().unwrap().to_string();
        assert!(e.contains("being written by huescan extract (pid"), "{e}");
        drop(held);
        assert!(!dir.join(LOCK_FILE).exists());
        drop(DirLock::acquire(&dir, "merge").unwrap());
        // A killed holder's file (content, no OS lock) is tidied away.
        fs::write(dir.join(LOCK_FILE), b"huescan extract (pid 1)").unwrap();
        DirLock::tidy(&dir);
        assert!(!dir.join(LOCK_FILE).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("huescan-fsx-{}", std::process::id()));
        let path = dir.join("a/b.txt");
        write_atomic(&path, b"hello").unwrap();
        assert_eq!(read(&path).unwrap(), b"hello");
        assert!(!temp_path(&path).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut parts = vec![e.to_string()];
        let mut cur = e.source();
        while let Some(c) = cur {
            parts.push(c.to_string());
            cur = c.source();
        }
        parts.join(": ")
    }

    #[test]
    fn io_errors_name_the_path_once_and_the_reason_once() {
        let e = Error::io("cannot read", "/x/y", std::io::Error::from_raw_os_error(2));
        let text = chain(&e);
        assert!(text.starts_with("cannot read `/x/y`: "), "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
    }

    #[test]
    fn out_of_space_says_what_to_do() {
        for code in [27, 28, 122] {
            let e = Error::io("cannot write", "/x/y", std::io::Error::from_raw_os_error(code));
            assert!(matches!(e, Error::NoSpace { .. }), "{code}");
            let text = chain(&e);
            assert!(text.contains("out of space") && text.contains("re-run the same command"), "{text}");
        }
    }
}

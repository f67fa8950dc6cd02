//! Small state files kept across restarts in `--state-directory` (login backoff, last-seen
//! times): read whole, written atomically (a temporary file renamed over the old one), never
//! secrets.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// The largest state file read back; a larger one is ignored with a warning.
const MAX_STATE_BYTES: u64 = 4 << 20;

/// The contents of `dir/name`, or `None` when it does not exist. A file that cannot be read
/// (or is too large) is logged and treated as absent: lost state must not stop the exporter.
pub fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return None,
        Err(err) => {
            log::warn!(file = path.display().to_string().as_str(), err = err.to_string().as_str(); "cannot read state file; starting without it");
            return None;
        }
        Ok(meta) if meta.len() > MAX_STATE_BYTES => {
            log::warn!(file = path.display().to_string().as_str(); "state file is larger than {MAX_STATE_BYTES} bytes; starting without it");
            return None;
        }
        Ok(_) => {}
    }
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            log::warn!(file = path.display().to_string().as_str(), err = err.to_string().as_str(); "cannot read state file; starting without it");
            None
        }
    }
}

/// Writes `bytes` to `dir/name` atomically: readers see the old or the new file, never a
/// part. The directory is created if missing (mode 0700); the file has mode 0600.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create state directory {}", dir.display()))?;
    let path = dir.join(name);
    let tmp: PathBuf = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write state file {}", path.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sub");
        assert_eq!(read(&dir, "x.json"), None);
        write_atomic(&dir, "x.json", b"{\"a\":1}").unwrap();
        write_atomic(&dir, "x.json", b"{\"a\":2}").unwrap();
        assert_eq!(read(&dir, "x.json").unwrap(), b"{\"a\":2}");
        let names: Vec<_> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}

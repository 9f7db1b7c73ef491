//! Small files in the data directory (cookie, keys, peer book, bans),
//! written whole or not at all.

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path`, readable by the owner only, through a
/// synced temporary file renamed over it: a crash leaves the old file or
/// the new one.
///
/// # Errors
/// When any step fails; `path` then holds what it held.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Reads a file of at most `max` bytes; `None` when it does not exist.
///
/// # Errors
/// When it cannot be read or is larger than `max`.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > max => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is {} bytes, over the {max} this file may hold", path.display(), meta.len()),
        )),
        Ok(_) => std::fs::read(path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

//! Reading and writing the files `sim` keeps: a bounded read (a file from outside is untrusted,
//! and may be `/dev/zero`), and an atomic write (a reader, or a sweep killed half-way, never sees
//! half a file).

use std::io::{Read, Write};
use std::path::Path;

/// Reads at most `limit` bytes of UTF-8 text; a longer file is an error, not a truncation.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Writes `data` to `path` so that a reader (or a crash) sees the old file or the new one,
/// never half of one: a temporary file in the same directory (named for this process, so that
/// processes writing side by side never share one), synced, then renamed.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

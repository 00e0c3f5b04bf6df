//! A sweep's report directory, `reports/<scenario>/<stamp>-<strategy>-seedsA-B[-shardIofN]`:
//! made (and so checked) before the first seed runs, never reusing an existing one.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC timestamp, `YYYYMMDD-HHMMSS`, for report directory names.
pub fn stamp() -> String {
    let secs = SystemTime::now() // determinism-ok: names a report directory only
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn unique_dir(base: &Path) -> std::io::Result<PathBuf> {
    for n in 0..10_000 {
        let candidate = if n == 0 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}-{n}", base.display()))
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "ten thousand report directories of this name already exist",
    ))
}

/// Makes `reports/<scenario>/<stamp>-<strategy>-seedsA-B`, naming the path in any error.
pub fn make_dir(reports: &Path, scenario: &str, leaf: &str) -> Result<PathBuf, String> {
    // A scenario made from a name (`cells:K:DIR`) may hold path separators: one component.
    let folder: String = scenario
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let parent = reports.join(folder);
    std::fs::create_dir_all(&parent).map_err(|e| {
        format!(
            "cannot create the report directory {} (under --reports {}): {e}",
            parent.display(),
            reports.display()
        )
    })?;
    unique_dir(&parent.join(leaf)).map_err(|e| {
        format!(
            "cannot create a report directory in {} (under --reports {}): {e}",
            parent.display(),
            reports.display()
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamp_shape() {
        let s = super::stamp();
        assert_eq!(s.len(), 15, "{s}");
        assert_eq!(&s[8..9], "-");
    }
}

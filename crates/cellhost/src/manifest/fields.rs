//! Typed readers for single manifest keys: each checks one value's type and shape and names
//! the key in its error.

use super::ManifestError;
use std::collections::BTreeSet;

pub(super) fn invalid(key: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn wrong(key: &str, expected: &'static str) -> ManifestError {
    ManifestError::WrongType {
        key: key.to_string(),
        expected,
    }
}

pub(super) fn text(
    table: &toml::Table,
    key: &'static str,
) -> Result<Option<String>, ManifestError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(key, "a string")),
    }
}

pub(super) fn boolean(table: &toml::Table, key: &'static str) -> Result<bool, ManifestError> {
    match table.get(key) {
        None => Ok(false),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(wrong(key, "true or false")),
    }
}

/// An unsigned 32-bit integer (Pulp decodes these keys into `uint32`).
pub(super) fn unsigned(table: &toml::Table, key: &'static str) -> Result<u32, ManifestError> {
    match table.get(key) {
        None => Ok(0),
        Some(toml::Value::Integer(v)) => {
            u32::try_from(*v).map_err(|_| invalid(key, format!("{v} is not in 0..={}", u32::MAX)))
        }
        Some(_) => Err(wrong(key, "an integer")),
    }
}

/// An array of strings, each passed through `check`.
pub(super) fn strings(
    table: &toml::Table,
    key: &'static str,
    check: impl Fn(&str, &str) -> Result<(), ManifestError>,
) -> Result<Vec<String>, ManifestError> {
    let Some(value) = table.get(key) else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or_else(|| wrong(key, "an array of strings"))?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let s = item
            .as_str()
            .ok_or_else(|| wrong(key, "an array of strings"))?;
        check(key, s)?;
        out.push(s.to_string());
    }
    Ok(out)
}

/// A name other cells may refer to: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
pub(super) fn check_name(key: &str, value: &str) -> Result<(), ManifestError> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    if value.is_empty() || value.len() > 64 {
        return Err(invalid(key, "must be 1 to 64 characters"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) || !value.chars().all(ok_char) {
        return Err(invalid(
            key,
            format!("`{value}` may use only a-z, 0-9, '-', '_' and '.', starting with a-z or 0-9"),
        ));
    }
    Ok(())
}

/// A free-form label (group names, federation peers): non-empty, at most 256 bytes.
pub(super) fn check_label(key: &str, value: &str) -> Result<(), ManifestError> {
    if value.trim().is_empty() || value.len() > 256 {
        return Err(invalid(
            key,
            "entries must be 1 to 256 characters, not blank",
        ));
    }
    Ok(())
}

/// `host_consumes`: exact provider names, no whitespace, no duplicates (as Pulp checks them).
pub(super) fn host_consumes(table: &toml::Table) -> Result<Vec<String>, ManifestError> {
    let key = "host_consumes";
    let out = strings(table, key, |key, s| {
        if s.is_empty() || s.len() > 256 {
            return Err(invalid(key, "entries must be 1 to 256 characters"));
        }
        if s.chars().any(|c| c <= ' ') {
            return Err(invalid(key, format!("`{s}` must not contain whitespace")));
        }
        Ok(())
    })?;
    let mut seen = BTreeSet::new();
    for s in &out {
        if !seen.insert(s.as_str()) {
            return Err(invalid(key, format!("`{s}` is listed twice")));
        }
    }
    Ok(out)
}

/// `wasm_sha256`: 64 hexadecimal characters (surrounding blanks ignored), kept in lower case.
pub(super) fn sha256(table: &toml::Table) -> Result<Option<String>, ManifestError> {
    let key = "wasm_sha256";
    let Some(value) = text(table, key)? else {
        return Ok(None);
    };
    let value = value.trim();
    if value.len() != 64 || !value.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(key, "must be exactly 64 hexadecimal characters"));
    }
    Ok(Some(value.to_ascii_lowercase()))
}

/// The module path: relative, and inside the cell's directory (Pulp also takes absolute paths;
/// a simulated host never reads outside the cell's own directory).
pub(super) fn check_wasm_path(path: &str) -> Result<(), ManifestError> {
    if path.is_empty() {
        return Err(invalid("wasm", "must not be empty"));
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err(invalid("wasm", "must be a relative path"));
    }
    if path.split('/').any(|part| part == ".." || part.is_empty()) {
        return Err(invalid(
            "wasm",
            "must stay inside the cell's directory (no '..' or empty parts)",
        ));
    }
    Ok(())
}

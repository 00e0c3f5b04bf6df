//! Strict parsing of a cell manifest (`pulp.cell.toml`). Every key is known or the manifest is
//! rejected with an error naming the key; every value is checked for type and shape. A manifest
//! comes from whoever packaged the cell, so nothing in it is trusted.

use std::collections::BTreeSet;
use std::fmt;

/// The highest manifest schema this host understands.
pub const SCHEMA_VERSION: i64 = 1;
/// The module file when the manifest names none.
pub const DEFAULT_WASM: &str = "cell.wasm";

const KNOWN_KEYS: &[&str] = &[
    "name",
    "version",
    "schema_version",
    "wasm",
    "provides",
    "consumes",
    "depends_on",
    "capabilities",
    "config",
];

/// A parsed, validated manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSpec {
    pub name: String,
    pub version: String,
    pub schema_version: i64,
    /// The module's path, relative to the manifest's directory.
    pub wasm: String,
    pub provides: Vec<String>,
    pub consumes: Vec<String>,
    pub depends_on: Vec<String>,
    /// Lower-cased and deduplicated, in sorted order.
    pub capabilities: Vec<String>,
    /// The `[config]` table, handed to `pulp_init` as MessagePack.
    pub config: toml::Table,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    Syntax { message: String },
    UnknownKey { key: String },
    Missing { key: &'static str },
    WrongType { key: String, expected: &'static str },
    Invalid { key: String, reason: String },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Syntax { message } => write!(f, "manifest is not valid TOML: {message}"),
            ManifestError::UnknownKey { key } => write!(f, "manifest has unknown key `{key}`"),
            ManifestError::Missing { key } => write!(f, "manifest lacks required key `{key}`"),
            ManifestError::WrongType { key, expected } => {
                write!(f, "manifest key `{key}` must be {expected}")
            }
            ManifestError::Invalid { key, reason } => {
                write!(f, "manifest key `{key}` is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

fn invalid(key: &str, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

fn text(table: &toml::Table, key: &'static str) -> Result<Option<String>, ManifestError> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ManifestError::WrongType {
            key: key.to_string(),
            expected: "a string",
        }),
    }
}

/// A name other cells may refer to: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
fn check_name(key: &str, value: &str) -> Result<(), ManifestError> {
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

fn names(table: &toml::Table, key: &'static str) -> Result<Vec<String>, ManifestError> {
    let Some(value) = table.get(key) else {
        return Ok(Vec::new());
    };
    let wrong = || ManifestError::WrongType {
        key: key.to_string(),
        expected: "an array of strings",
    };
    let items = value.as_array().ok_or_else(wrong)?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let s = item.as_str().ok_or_else(wrong)?;
        check_name(key, s)?;
        out.push(s.to_string());
    }
    Ok(out)
}

fn check_wasm_path(path: &str) -> Result<(), ManifestError> {
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

/// Parses and validates a manifest.
pub fn parse(source: &str) -> Result<CellSpec, ManifestError> {
    let table: toml::Table =
        source
            .parse()
            .map_err(|e: toml::de::Error| ManifestError::Syntax {
                message: e.message().to_string(),
            })?;
    if let Some(key) = table.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
        return Err(ManifestError::UnknownKey { key: key.clone() });
    }
    let name = text(&table, "name")?.ok_or(ManifestError::Missing { key: "name" })?;
    check_name("name", &name)?;
    let version = text(&table, "version")?.ok_or(ManifestError::Missing { key: "version" })?;
    if version.is_empty() || version.len() > 64 {
        return Err(invalid("version", "must be 1 to 64 characters"));
    }
    let schema_version = match table.get("schema_version") {
        None => SCHEMA_VERSION,
        Some(toml::Value::Integer(v)) if (0..=SCHEMA_VERSION).contains(v) => *v,
        Some(toml::Value::Integer(v)) => {
            return Err(invalid(
                "schema_version",
                format!("{v} is not supported (at most {SCHEMA_VERSION})"),
            ));
        }
        Some(_) => {
            return Err(ManifestError::WrongType {
                key: "schema_version".into(),
                expected: "an integer",
            });
        }
    };
    let wasm = text(&table, "wasm")?.unwrap_or_else(|| DEFAULT_WASM.to_string());
    check_wasm_path(&wasm)?;
    let capabilities: BTreeSet<String> = names_lowercased(&table)?;
    let config = match table.get("config") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => {
            return Err(ManifestError::WrongType {
                key: "config".into(),
                expected: "a table",
            });
        }
    };
    Ok(CellSpec {
        name,
        version,
        schema_version,
        wasm,
        provides: names(&table, "provides")?,
        consumes: names(&table, "consumes")?,
        depends_on: names(&table, "depends_on")?,
        capabilities: capabilities.into_iter().collect(),
        config,
    })
}

/// Capabilities are case-insensitive: lower-case them before checking, then deduplicate.
fn names_lowercased(table: &toml::Table) -> Result<BTreeSet<String>, ManifestError> {
    let mut lowered = table.clone();
    if let Some(toml::Value::Array(items)) = lowered.get_mut("capabilities") {
        for item in items.iter_mut() {
            if let toml::Value::String(s) = item {
                *s = s.to_ascii_lowercase();
            }
        }
    }
    Ok(names(&lowered, "capabilities")?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "counter"
version = "0.1.0"
schema_version = 1
wasm = "build/counter.wasm"
provides = ["count"]
consumes = ["clock"]
depends_on = ["store"]
capabilities = ["Storage.KV", "storage.kv", "logging"]

[config]
start = 5
label = "c"
"#;

    #[test]
    fn a_good_manifest_parses_and_normalises_capabilities() {
        let spec = parse(GOOD).expect("valid manifest");
        assert_eq!(spec.name, "counter");
        assert_eq!(spec.wasm, "build/counter.wasm");
        assert_eq!(spec.capabilities, vec!["logging", "storage.kv"]);
        assert_eq!(spec.config.get("start"), Some(&toml::Value::Integer(5)));
    }

    #[test]
    fn defaults_apply() {
        let spec = parse("name = \"a\"\nversion = \"1\"").expect("valid manifest");
        assert_eq!(spec.wasm, DEFAULT_WASM);
        assert_eq!(spec.schema_version, SCHEMA_VERSION);
        assert!(spec.config.is_empty() && spec.provides.is_empty());
    }

    #[test]
    fn bad_manifests_name_their_problem() {
        let cases: &[(&str, ManifestError)] = &[
            (
                "name = \"a\"\nversion = \"1\"\nrestart = \"always\"",
                ManifestError::UnknownKey {
                    key: "restart".into(),
                },
            ),
            ("version = \"1\"", ManifestError::Missing { key: "name" }),
            ("name = \"a\"", ManifestError::Missing { key: "version" }),
            (
                "name = 3\nversion = \"1\"",
                ManifestError::WrongType {
                    key: "name".into(),
                    expected: "a string",
                },
            ),
            (
                "name = \"a\"\nversion = \"1\"\nprovides = \"x\"",
                ManifestError::WrongType {
                    key: "provides".into(),
                    expected: "an array of strings",
                },
            ),
            (
                "name = \"a\"\nversion = \"1\"\nconfig = 1",
                ManifestError::WrongType {
                    key: "config".into(),
                    expected: "a table",
                },
            ),
        ];
        for (source, want) in cases {
            assert_eq!(parse(source).as_ref(), Err(want), "{source}");
        }
        for (source, key) in [
            (
                "name = \"a\"\nversion = \"1\"\nschema_version = 2",
                "schema_version",
            ),
            (
                "name = \"a\"\nversion = \"1\"\nwasm = \"../x.wasm\"",
                "wasm",
            ),
            ("name = \"a\"\nversion = \"1\"\nwasm = \"/etc/x\"", "wasm"),
            ("name = \"A b\"\nversion = \"1\"", "name"),
            (
                "name = \"a\"\nversion = \"1\"\ndepends_on = [\"\"]",
                "depends_on",
            ),
        ] {
            match parse(source) {
                Err(ManifestError::Invalid { key: k, .. }) => assert_eq!(k, key, "{source}"),
                other => panic!("{source}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("name = "),
            Err(ManifestError::Syntax { .. })
        ));
        let message = parse("name = \"a\"\nversion = \"1\"\nbogus = 1")
            .err()
            .map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("manifest has unknown key `bogus`"));
    }

    proptest::proptest! {
        /// Any text gives a spec or a typed error, never a panic.
        #[test]
        fn any_text_is_handled(source in ".{0,200}") {
            let _ = parse(&source);
        }
    }
}

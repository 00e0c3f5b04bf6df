//! Strict parsing of a cell manifest (`pulp.cell.toml`). The keys are Pulp's: every key Pulp's
//! manifest parser accepts is accepted here, and any other key is rejected with an error naming
//! it. Every value is checked for type and shape. A manifest comes from whoever packaged the
//! cell, so nothing in it is trusted.
//!
//! Keys the simulation models: `max_memory_pages` (the cell's memory limit), `call_timeout_ms`
//! (a bound on one entry, in the host's time: virtual time in simulation), `restart` (what the
//! host does after a cell fails), `wasm_sha256` (checked when a cell is loaded from a
//! directory). Keys parsed and kept but without effect here, as in Pulp itself:
//! `shared_memory_groups`, `dedicated_thread`, `snapshotable`, `migratable`, `host_consumes`,
//! `federated_callers`, `federated_consumes`.

mod fields;
#[cfg(test)]
mod tests;

use fields::{boolean, check_name, check_wasm_path, invalid, strings, text, unsigned};
use std::collections::BTreeSet;
use std::fmt;

/// The highest manifest schema this host understands.
pub const SCHEMA_VERSION: i64 = 1;
/// The module file when the manifest names none.
pub const DEFAULT_WASM: &str = "cell.wasm";
/// The largest `max_memory_pages` (the whole 32-bit address space).
pub const MAX_MEMORY_PAGES: u32 = 65_536;

/// Every top-level key of Pulp's manifest schema.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "version",
    "schema_version",
    "wasm",
    "wasm_sha256",
    "provides",
    "consumes",
    "host_consumes",
    "depends_on",
    "capabilities",
    "shared_memory_groups",
    "dedicated_thread",
    "snapshotable",
    "restart",
    "max_memory_pages",
    "call_timeout_ms",
    "federated_callers",
    "federated_consumes",
    "migratable",
    "config",
];

/// What the host does when a cell fails (a trap, its fuel or time budget spent, or
/// `proc_exit`) during a step or a sibling call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The cell stays failed.
    Never,
    /// The host makes a new instance and runs `pulp_init` again, unless the cell ended with
    /// `proc_exit(0)` (a clean exit).
    OnCrash,
    /// As `OnCrash`, and after a clean exit too.
    Always,
}

impl Restart {
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Never => "never",
            Restart::OnCrash => "on_crash",
            Restart::Always => "always",
        }
    }
}

/// Fuel budgets for one cell; `None` takes the host's default (`HostConfig`). Pulp's schema
/// has no fuel keys (its host bounds calls by wall-clock time), so the parser leaves these
/// unset; whoever loads a cell may set them on the spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuelBudgets {
    /// The start function (`_initialize`), run once when the cell is loaded.
    pub start: Option<u64>,
    /// One entry: `pulp_init`, `pulp_step`, `pulp_on_call`, `pulp_shutdown`.
    pub entry: Option<u64>,
    /// A host-initiated `pulp_alloc` or `pulp_free`.
    pub alloc: Option<u64>,
}

/// A parsed, validated manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSpec {
    pub name: String,
    pub version: String,
    pub schema_version: i64,
    /// The module's path, relative to the manifest's directory.
    pub wasm: String,
    /// The module's SHA-256 (lower-case hex), checked when the cell is loaded from a directory.
    pub wasm_sha256: Option<String>,
    pub provides: Vec<String>,
    pub consumes: Vec<String>,
    /// Exact providers of other applications this cell may call (Pulp's cross-application
    /// calls; kept, not modelled).
    pub host_consumes: Vec<String>,
    pub depends_on: Vec<String>,
    /// Lower-cased and deduplicated, in sorted order.
    pub capabilities: Vec<String>,
    pub shared_memory_groups: Vec<String>,
    pub dedicated_thread: bool,
    pub snapshotable: bool,
    pub migratable: bool,
    pub federated_callers: Vec<String>,
    pub federated_consumes: Vec<String>,
    /// `None` when the manifest names no policy: the host's default applies.
    pub restart: Option<Restart>,
    /// The cell's memory limit in 64 KiB pages; `None` (or 0 in the manifest): the host's.
    pub max_memory_pages: Option<u32>,
    /// A bound on one entry in milliseconds; `None` (or 0 in the manifest): the host's.
    pub call_timeout_ms: Option<u32>,
    /// The `[config]` table, handed to `pulp_init` as MessagePack.
    pub config: toml::Table,
    /// Fuel budgets (not manifest keys: see [`FuelBudgets`]).
    pub fuel: FuelBudgets,
    /// The cell's WASI arguments and environment (`KEY=value`): empty unless whoever loads
    /// the cell sets them (Pulp's schema has no such keys).
    pub args: Vec<String>,
    pub env: Vec<String>,
}

impl CellSpec {
    /// A spec with only a name and a version, every other field at its default.
    pub fn new(name: &str, version: &str) -> Self {
        CellSpec {
            name: name.to_string(),
            version: version.to_string(),
            schema_version: SCHEMA_VERSION,
            wasm: DEFAULT_WASM.to_string(),
            wasm_sha256: None,
            provides: Vec::new(),
            consumes: Vec::new(),
            host_consumes: Vec::new(),
            depends_on: Vec::new(),
            capabilities: Vec::new(),
            shared_memory_groups: Vec::new(),
            dedicated_thread: false,
            snapshotable: false,
            migratable: false,
            federated_callers: Vec::new(),
            federated_consumes: Vec::new(),
            restart: None,
            max_memory_pages: None,
            call_timeout_ms: None,
            config: toml::Table::new(),
            fuel: FuelBudgets::default(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }
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
    let mut spec = CellSpec::new(&name, &version);
    spec.schema_version = schema_version(&table)?;
    spec.wasm = text(&table, "wasm")?.unwrap_or_else(|| DEFAULT_WASM.to_string());
    check_wasm_path(&spec.wasm)?;
    spec.wasm_sha256 = fields::sha256(&table)?;
    spec.provides = strings(&table, "provides", check_name)?;
    spec.consumes = strings(&table, "consumes", check_name)?;
    spec.host_consumes = fields::host_consumes(&table)?;
    spec.depends_on = strings(&table, "depends_on", check_name)?;
    spec.capabilities = capabilities(&table)?.into_iter().collect();
    spec.shared_memory_groups = strings(&table, "shared_memory_groups", fields::check_label)?;
    spec.dedicated_thread = boolean(&table, "dedicated_thread")?;
    spec.snapshotable = boolean(&table, "snapshotable")?;
    spec.migratable = boolean(&table, "migratable")?;
    spec.federated_callers = strings(&table, "federated_callers", fields::check_label)?;
    spec.federated_consumes = strings(&table, "federated_consumes", fields::check_label)?;
    spec.restart = restart(&table)?;
    let pages = unsigned(&table, "max_memory_pages")?;
    if pages > MAX_MEMORY_PAGES {
        return Err(invalid(
            "max_memory_pages",
            format!("{pages} is more than a 32-bit memory has ({MAX_MEMORY_PAGES} pages)"),
        ));
    }
    spec.max_memory_pages = (pages != 0).then_some(pages);
    let timeout = unsigned(&table, "call_timeout_ms")?;
    spec.call_timeout_ms = (timeout != 0).then_some(timeout);
    spec.config = match table.get("config") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => {
            return Err(ManifestError::WrongType {
                key: "config".into(),
                expected: "a table",
            });
        }
    };
    Ok(spec)
}

/// 0 or absent means the current schema (as in Pulp); newer schemas are refused.
fn schema_version(table: &toml::Table) -> Result<i64, ManifestError> {
    match table.get("schema_version") {
        None | Some(toml::Value::Integer(0)) => Ok(SCHEMA_VERSION),
        Some(toml::Value::Integer(v)) if (1..=SCHEMA_VERSION).contains(v) => Ok(*v),
        Some(toml::Value::Integer(v)) => Err(invalid(
            "schema_version",
            format!("{v} is not supported (1 to {SCHEMA_VERSION})"),
        )),
        Some(_) => Err(ManifestError::WrongType {
            key: "schema_version".into(),
            expected: "an integer",
        }),
    }
}

/// `never`, `on_crash` or `always` (blanks around it ignored, as Pulp does); absent or blank:
/// `None`.
fn restart(table: &toml::Table) -> Result<Option<Restart>, ManifestError> {
    let Some(value) = text(table, "restart")? else {
        return Ok(None);
    };
    match value.trim() {
        "" => Ok(None),
        "never" => Ok(Some(Restart::Never)),
        "on_crash" => Ok(Some(Restart::OnCrash)),
        "always" => Ok(Some(Restart::Always)),
        other => Err(invalid(
            "restart",
            format!("`{other}` is not one of never, on_crash, always"),
        )),
    }
}

/// Capabilities are case-insensitive: lower-case them before checking, then deduplicate.
fn capabilities(table: &toml::Table) -> Result<BTreeSet<String>, ManifestError> {
    let mut lowered = table.clone();
    if let Some(toml::Value::Array(items)) = lowered.get_mut("capabilities") {
        for item in items.iter_mut() {
            if let toml::Value::String(s) = item {
                *s = s.to_ascii_lowercase();
            }
        }
    }
    Ok(strings(&lowered, "capabilities", check_name)?
        .into_iter()
        .collect())
}

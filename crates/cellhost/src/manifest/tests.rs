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
    assert_eq!(spec, CellSpec::new("a", "1"));
    assert_eq!(spec.wasm, DEFAULT_WASM);
    assert_eq!(spec.schema_version, SCHEMA_VERSION);
    assert_eq!(spec.restart, None);
    assert!(spec.config.is_empty() && spec.provides.is_empty());
}

/// Every key Pulp's manifest schema has, each with a value of its type.
const EVERY_PULP_KEY: &str = r#"
schema_version = 1
name = "full"
version = "2.0.0"
wasm = "cell.wasm"
wasm_sha256 = " 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef "
provides = ["p"]
consumes = ["q"]
host_consumes = ["other-app/provider"]
depends_on = ["d"]
capabilities = ["logging"]
shared_memory_groups = ["g1"]
dedicated_thread = true
snapshotable = true
restart = " on_crash "
max_memory_pages = 512
call_timeout_ms = 250
federated_callers = ["peer"]
federated_consumes = ["remote"]
migratable = true

[config]
nested = { deeper = { x = 1 } }
"#;

#[test]
fn every_key_pulp_accepts_is_accepted_with_its_meaning() {
    let spec = parse(EVERY_PULP_KEY).expect("Pulp's full schema parses");
    assert_eq!(
        spec.wasm_sha256.as_deref(),
        Some("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    );
    assert_eq!(spec.host_consumes, vec!["other-app/provider"]);
    assert_eq!(spec.shared_memory_groups, vec!["g1"]);
    assert!(spec.dedicated_thread && spec.snapshotable && spec.migratable);
    assert_eq!(spec.restart, Some(Restart::OnCrash));
    assert_eq!(spec.max_memory_pages, Some(512));
    assert_eq!(spec.call_timeout_ms, Some(250));
    assert_eq!(spec.federated_callers, vec!["peer"]);
    assert_eq!(spec.federated_consumes, vec!["remote"]);
    // 0 means "the host's default", as in Pulp.
    let zero = parse("name = \"a\"\nversion = \"1\"\nmax_memory_pages = 0\ncall_timeout_ms = 0")
        .expect("zero limits parse");
    assert_eq!((zero.max_memory_pages, zero.call_timeout_ms), (None, None));
    for (policy, want) in [
        ("never", Restart::Never),
        ("always", Restart::Always),
        ("on_crash", Restart::OnCrash),
    ] {
        let spec = parse(&format!(
            "name = \"a\"\nversion = \"1\"\nrestart = \"{policy}\""
        ))
        .expect("policy parses");
        assert_eq!(spec.restart, Some(want));
        assert_eq!(want.as_str(), policy);
    }
}

#[test]
fn bad_manifests_name_their_problem() {
    let cases: &[(&str, ManifestError)] = &[
        (
            "name = \"a\"\nversion = \"1\"\nrestart_policy = \"always\"",
            ManifestError::UnknownKey {
                key: "restart_policy".into(),
            },
        ),
        (
            "name = \"a\"\nversion = \"1\"\nmemory_pages = 3",
            ManifestError::UnknownKey {
                key: "memory_pages".into(),
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
        (
            "name = \"a\"\nversion = \"1\"\ndedicated_thread = \"yes\"",
            ManifestError::WrongType {
                key: "dedicated_thread".into(),
                expected: "true or false",
            },
        ),
        (
            "name = \"a\"\nversion = \"1\"\ncall_timeout_ms = 1.5",
            ManifestError::WrongType {
                key: "call_timeout_ms".into(),
                expected: "an integer",
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
            "name = \"a\"\nversion = \"1\"\nschema_version = -1",
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
        (
            "name = \"a\"\nversion = \"1\"\nrestart = \"sometimes\"",
            "restart",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nmax_memory_pages = -1",
            "max_memory_pages",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nmax_memory_pages = 65537",
            "max_memory_pages",
        ),
        (
            "name = \"a\"\nversion = \"1\"\ncall_timeout_ms = 4294967296",
            "call_timeout_ms",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nwasm_sha256 = \"abc\"",
            "wasm_sha256",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nhost_consumes = [\"a b\"]",
            "host_consumes",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nhost_consumes = [\"x\", \"x\"]",
            "host_consumes",
        ),
        (
            "name = \"a\"\nversion = \"1\"\nshared_memory_groups = [\" \"]",
            "shared_memory_groups",
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

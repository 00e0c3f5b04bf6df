//! Makes a module's state after its start function readable and writable from the host: adds
//! an export for every mutable global it defines (engines reach only exported globals), and
//! checks that nothing else a start function can change lives outside linear memory and
//! those globals. A module whose code changes a table or drops a segment (`table.set`,
//! `table.grow`, `table.fill`, `table.copy`, `table.init`, `elem.drop`, `data.drop`), or that
//! has more than one memory or imports a memory, table or global, is not snapshotted: its
//! instances run the start function themselves.
//!
//! Only the export section changes (entries appended); every other section is copied byte
//! for byte, so the code and its fuel costs are the module's own.

use wasmparser::{Operator, Parser, Payload, TypeRef};

/// The prefix of the added exports' names.
pub const GLOBAL_PREFIX: &str = "cellhost.snapshot.global.";

/// A module with its mutable globals exported.
#[derive(Clone, Debug)]
pub struct Rewritten {
    pub wasm: Vec<u8>,
    /// The names of the added exports, one per mutable global.
    pub globals: Vec<String>,
}

const EXPORT_SECTION: u8 = 7;
const EXPORT_GLOBAL: u8 = 3;

fn leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Reads an unsigned LEB128 at `*at`, moving past it.
fn read_leb(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Why a module cannot be snapshotted (its instances run their start function themselves).
pub fn rewrite(wasm: &[u8]) -> Result<Rewritten, String> {
    let mut mutable = Vec::new();
    let mut imported_globals = 0u32;
    let mut memories = 0u32;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| e.to_string())? {
            Payload::ImportSection(reader) => {
                for import in reader {
                    match import.map_err(|e| e.to_string())?.ty {
                        TypeRef::Func(_) | TypeRef::Tag(_) => {}
                        TypeRef::Global(_) => imported_globals += 1,
                        TypeRef::Memory(_) | TypeRef::Table(_) => {
                            return Err("it imports a memory or table".into());
                        }
                    }
                }
            }
            Payload::MemorySection(reader) => memories += reader.count(),
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    if global.map_err(|e| e.to_string())?.ty.mutable {
                        mutable.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    names.push(export.map_err(|e| e.to_string())?.name.to_string());
                }
            }
            Payload::CodeSectionEntry(body) => {
                let ops = body.get_operators_reader().map_err(|e| e.to_string())?;
                for op in ops {
                    if let Some(what) = changes_outside_memory(&op.map_err(|e| e.to_string())?) {
                        return Err(format!("its code uses `{what}`"));
                    }
                }
            }
            _ => {}
        }
    }
    if imported_globals > 0 {
        return Err("it imports a global".into());
    }
    if memories != 1 {
        return Err(format!("it has {memories} memories"));
    }
    let globals: Vec<String> = mutable
        .iter()
        .map(|i| format!("{GLOBAL_PREFIX}{i}"))
        .collect();
    if let Some(taken) = globals.iter().find(|g| names.contains(g)) {
        return Err(format!("it already exports `{taken}`"));
    }
    let wasm = with_exports(wasm, &mutable, &globals).ok_or("its sections do not parse")?;
    Ok(Rewritten { wasm, globals })
}

fn changes_outside_memory(op: &Operator<'_>) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::DataDrop { .. } => "data.drop",
        _ => return None,
    })
}

/// Copies the module, appending exports of `globals` (by index, under `names`) to its
/// export section.
fn with_exports(wasm: &[u8], globals: &[u32], names: &[String]) -> Option<Vec<u8>> {
    let mut added = Vec::new();
    for (index, name) in globals.iter().zip(names) {
        leb(&mut added, name.len() as u64);
        added.extend_from_slice(name.as_bytes());
        added.push(EXPORT_GLOBAL);
        leb(&mut added, u64::from(*index));
    }
    let mut out = wasm.get(..8)?.to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = usize::try_from(read_leb(wasm, &mut at)?).ok()?;
        let body = wasm.get(at..at.checked_add(size)?)?;
        at += size;
        if id != EXPORT_SECTION {
            out.push(id);
            leb(&mut out, size as u64);
            out.extend_from_slice(body);
            continue;
        }
        let mut inner = 0;
        let count = read_leb(body, &mut inner)?;
        let mut section = Vec::new();
        leb(&mut section, count + globals.len() as u64);
        section.extend_from_slice(&body[inner..]);
        section.extend_from_slice(&added);
        out.push(EXPORT_SECTION);
        leb(&mut out, section.len() as u64);
        out.extend_from_slice(&section);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutable_globals_are_exported_and_the_rest_is_unchanged() {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1)
                (global $a (mut i32) (i32.const 1))
                (global $b i64 (i64.const 2))
                (global $c (mut f64) (f64.const 3))
                (func (export "f") (result i32) (global.get $a)))"#,
        )
        .expect("test module");
        let r = rewrite(&wasm).expect("rewritable");
        assert_eq!(
            r.globals,
            vec![format!("{GLOBAL_PREFIX}0"), format!("{GLOBAL_PREFIX}2")]
        );
        let exports: Vec<String> = Parser::new(0)
            .parse_all(&r.wasm)
            .filter_map(|p| match p {
                Ok(Payload::ExportSection(s)) => Some(
                    s.into_iter()
                        .map(|e| e.map(|e| e.name.to_string()).unwrap_or_default())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(exports.len(), 4);
        let engine = wasmi::Engine::default();
        assert!(wasmi::Module::new(&engine, &r.wasm).is_ok(), "still valid");
    }

    #[test]
    fn table_changes_and_odd_memories_are_refused() {
        let table = wat::parse_str(
            r#"(module (memory 1) (table 1 funcref)
                (func (table.set (i32.const 0) (ref.null func))))"#,
        )
        .expect("test module");
        assert_eq!(
            rewrite(&table).err().as_deref(),
            Some("its code uses `table.set`")
        );
        let none = wat::parse_str("(module)").expect("test module");
        assert_eq!(rewrite(&none).err().as_deref(), Some("it has 0 memories"));
    }
}

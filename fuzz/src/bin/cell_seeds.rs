//! Writes the starting corpus of the `cell_module` target: the compiled test cells (a working
//! node, a trapping, a spinning, a memory-hogging and a bad-pointer cell), so the fuzzer
//! mutates real cells instead of searching for the WASM magic number.
//!
//!     cargo run --release --bin cell_seeds -- corpus/cell_module

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cell_seeds DIR");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cell_seeds: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    for (name, _) in cellhost::cells::SOURCES {
        let bytes = match cellhost::cells::wasm(name) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("cell_seeds: {e}");
                return ExitCode::from(1);
            }
        };
        let path = dir.join(format!("{name}.wasm"));
        if let Err(e) = std::fs::write(&path, bytes) {
            eprintln!("cell_seeds: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    println!("cell_seeds: {} cells in {}", cellhost::cells::SOURCES.len(), dir.display());
    ExitCode::SUCCESS
}

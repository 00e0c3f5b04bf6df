//! A reference model of one open file, and the oracle that replays a file pipe's observed
//! request/reply log against it: every reply must be one a correct file could have given, and
//! the file's final contents must be what the acknowledged writes make.

use crate::Violation;

/// One request and the reply observed for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileExchange {
    /// Write `data`; the reply acknowledged `wrote` bytes (or an error).
    Write {
        data: Vec<u8>,
        wrote: Result<u64, u64>,
    },
    /// Read up to `len`; the reply carried `data` (or an error).
    Read {
        len: u64,
        data: Result<Vec<u8>, u64>,
    },
    /// Seek to an absolute position; the reply gave `pos` (or an error).
    SeekStart { offset: u64, pos: Result<u64, u64> },
}

#[derive(Default)]
pub struct FileModel {
    data: Vec<u8>,
    pos: usize,
}

impl FileModel {
    pub fn contents(&self) -> &[u8] {
        &self.data
    }

    /// Checks one exchange and applies it; returns a description of the violation, if any.
    pub fn apply(&mut self, ex: &FileExchange) -> Option<String> {
        match ex {
            FileExchange::Write { data, wrote } => match wrote {
                Ok(n) if *n >= 1 && *n as usize <= data.len() => {
                    let n = *n as usize;
                    let end = self.pos + n;
                    if self.data.len() < end {
                        self.data.resize(end, 0);
                    }
                    self.data[self.pos..end].copy_from_slice(&data[..n]);
                    self.pos = end;
                    None
                }
                Ok(n) => Some(format!("write of {} bytes acknowledged {n}", data.len())),
                Err(code) => Some(format!("write failed with error {code}")),
            },
            FileExchange::Read { len, data } => {
                let available = self.data.len().saturating_sub(self.pos).min(*len as usize);
                match data {
                    Ok(d) if d.len() <= available && (!d.is_empty() || available == 0) => {
                        // `available > 0` whenever `d` is non-empty, so the range is in bounds.
                        let want = self
                            .data
                            .get(self.pos..self.pos + d.len())
                            .unwrap_or_default();
                        if d.as_slice() != want {
                            return Some(format!(
                                "read at {} returned bytes the file does not hold",
                                self.pos
                            ));
                        }
                        self.pos += d.len();
                        None
                    }
                    Ok(d) => Some(format!(
                        "read of {len} at {} returned {} bytes, {available} available",
                        self.pos,
                        d.len()
                    )),
                    Err(code) => Some(format!("read failed with error {code}")),
                }
            }
            FileExchange::SeekStart { offset, pos } => match pos {
                Ok(p) if p == offset => {
                    self.pos = *offset as usize;
                    None
                }
                Ok(p) => Some(format!("seek to {offset} reported position {p}")),
                Err(code) => Some(format!("seek failed with error {code}")),
            },
        }
    }
}

/// Replays `log` for the file at `path` and compares the final contents with `stored`.
pub fn check_file(path: &str, log: &[FileExchange], stored: Option<&[u8]>) -> Vec<Violation> {
    let mut model = FileModel::default();
    for (i, ex) in log.iter().enumerate() {
        if let Some(why) = model.apply(ex) {
            return vec![Violation::new(
                "file-model",
                format!("{path}: exchange {i}: {why}"),
            )];
        }
    }
    match stored {
        Some(s) if s == model.contents() => Vec::new(),
        Some(s) => vec![Violation::new(
            "file-model",
            format!(
                "{path}: store holds {} bytes, the acknowledged writes make {}",
                s.len(),
                model.contents().len()
            ),
        )],
        None => vec![Violation::new(
            "file-model",
            format!("{path}: file missing from the store"),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_accepts_short_transfers_and_rejects_lies() {
        let log = vec![
            FileExchange::Write {
                data: b"hello".to_vec(),
                wrote: Ok(3),
            },
            FileExchange::Write {
                data: b"lo".to_vec(),
                wrote: Ok(2),
            },
            FileExchange::SeekStart {
                offset: 1,
                pos: Ok(1),
            },
            FileExchange::Read {
                len: 10,
                data: Ok(b"el".to_vec()),
            },
            FileExchange::Read {
                len: 10,
                data: Ok(b"lo".to_vec()),
            },
            FileExchange::Read {
                len: 10,
                data: Ok(vec![]),
            },
        ];
        assert!(check_file("f", &log, Some(b"hello")).is_empty());
        assert!(!check_file("f", &log, Some(b"hellx")).is_empty());
        let lie = vec![FileExchange::Read {
            len: 4,
            data: Ok(b"zz".to_vec()),
        }];
        assert!(!check_file("f", &lie, Some(b"")).is_empty());
        let empty_short = vec![
            FileExchange::Write {
                data: b"ab".to_vec(),
                wrote: Ok(2),
            },
            FileExchange::SeekStart {
                offset: 0,
                pos: Ok(0),
            },
            FileExchange::Read {
                len: 2,
                data: Ok(vec![]),
            },
        ];
        assert!(
            check_file("f", &empty_short, Some(b"ab"))[0]
                .message
                .contains("returned 0 bytes")
        );
        // Reading past the end (after a seek beyond it) returns nothing, and writing there fills
        // the gap with zeros.
        let past_end = vec![
            FileExchange::SeekStart {
                offset: 5,
                pos: Ok(5),
            },
            FileExchange::Read {
                len: 3,
                data: Ok(vec![]),
            },
            FileExchange::Write {
                data: b"x".to_vec(),
                wrote: Ok(1),
            },
        ];
        assert!(check_file("f", &past_end, Some(b"\0\0\0\0\0x")).is_empty());
    }
}

//! MessagePack encoding of a manifest's `[config]` table, as `pulp_init` receives it. Only the
//! encoder: the host never decodes what a cell sends as MessagePack. Uses the smallest encoding
//! for every integer, string, array and map length (what msgpack encoders emit by default), so
//! the bytes are canonical and a replay compares them exactly.

/// Encodes a TOML table as a MessagePack map (keys in the table's order, which is sorted).
pub fn encode_table(table: &toml::Table) -> Vec<u8> {
    let mut out = Vec::new();
    map_header(&mut out, table.len());
    for (k, v) in table {
        string(&mut out, k);
        value(&mut out, v);
    }
    out
}

fn value(out: &mut Vec<u8>, v: &toml::Value) {
    match v {
        toml::Value::String(s) => string(out, s),
        toml::Value::Integer(i) => integer(out, *i),
        toml::Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        toml::Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        toml::Value::Datetime(d) => string(out, &d.to_string()),
        toml::Value::Array(items) => {
            let n = items.len();
            if n < 16 {
                out.push(0x90 | n as u8);
            } else if n <= 0xffff {
                out.push(0xdc);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                out.push(0xdd);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            for item in items {
                value(out, item);
            }
        }
        toml::Value::Table(t) => {
            map_header(out, t.len());
            for (k, v) in t {
                string(out, k);
                value(out, v);
            }
        }
    }
}

fn map_header(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn integer(out: &mut Vec<u8>, i: i64) {
    match i {
        0..=0x7f => out.push(i as u8),
        -32..=-1 => out.push(i as i8 as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, i as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        }
        -0x80..=-33 => out.extend_from_slice(&[0xd0, i as i8 as u8]),
        -0x8000..=-0x81 => {
            out.push(0xd1);
            out.extend_from_slice(&(i as i16).to_be_bytes());
        }
        -0x8000_0000..=-0x8001 => {
            out.push(0xd2);
            out.extend_from_slice(&(i as i32).to_be_bytes());
        }
        i if i > 0 => {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(source: &str) -> Vec<u8> {
        encode_table(&source.parse::<toml::Table>().expect("valid toml"))
    }

    #[test]
    fn known_answers() {
        // Bytes as the MessagePack specification gives them.
        assert_eq!(enc(""), [0x80]);
        assert_eq!(enc("a = 1"), [0x81, 0xa1, b'a', 0x01]);
        assert_eq!(enc("a = -1"), [0x81, 0xa1, b'a', 0xff]);
        assert_eq!(enc("a = 200"), [0x81, 0xa1, b'a', 0xcc, 200]);
        assert_eq!(enc("a = -200"), [0x81, 0xa1, b'a', 0xd1, 0xff, 0x38]);
        assert_eq!(enc("a = 70000"), [0x81, 0xa1, b'a', 0xce, 0, 1, 0x11, 0x70]);
        assert_eq!(enc("a = true"), [0x81, 0xa1, b'a', 0xc3]);
        assert_eq!(enc("a = \"hi\""), [0x81, 0xa1, b'a', 0xa2, b'h', b'i']);
        assert_eq!(enc("a = [1, 2]"), [0x81, 0xa1, b'a', 0x92, 1, 2]);
        assert_eq!(
            enc("a = 1.5"),
            [0x81, 0xa1, b'a', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc("[a]\nb = 0"), [0x81, 0xa1, b'a', 0x81, 0xa1, b'b', 0]);
        let long = "x".repeat(40);
        let bytes = enc(&format!("a = \"{long}\""));
        assert_eq!(&bytes[3..5], &[0xd9, 40]);
        assert_eq!(bytes.len(), 5 + 40);
        assert_eq!(
            enc("a = 9223372036854775807")[3..],
            [0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }
}

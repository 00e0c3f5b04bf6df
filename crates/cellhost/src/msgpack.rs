//! MessagePack encoding of a manifest's `[config]` table, as `pulp_init` receives it, byte for
//! byte as Pulp sends it. Pulp decodes the table with BurntSushi/toml into Go values and
//! encodes them with vmihailenco/msgpack v5's defaults, so:
//!
//! - every integer is a TOML `int64` and goes out as `int64` (`d3` and 8 bytes), never in a
//!   shorter form: a cell's SDK may type-assert `cfg["marker"].(int64)`;
//! - every float is a `float64` (`cb`); NaN is Go's `math.NaN()` (`7ff8000000000001`) with
//!   the sign TOML gave it;
//! - strings, arrays and maps take their shortest length header;
//! - a datetime is a `time.Time`, sent as the timestamp extension (type -1) in its shortest
//!   form; a local datetime, date or time counts as UTC, and a time without a date falls on
//!   0000-01-01 (BurntSushi's conventions);
//! - map keys are in sorted order. Pulp iterates a Go map, so its order differs run to run;
//!   sorted is one of the orders it may send, and the only one that replays.
//!
//! Only the encoder: the host never decodes what a cell sends as MessagePack.

/// Go's `math.NaN()`.
const GO_NAN: u64 = 0x7ff8_0000_0000_0001;
/// The timestamp extension type.
const TIMESTAMP: u8 = 0xff;

/// Encodes a TOML table as a MessagePack map.
pub fn encode_table(table: &toml::Table) -> Vec<u8> {
    let mut out = Vec::new();
    map(&mut out, table);
    out
}

fn value(out: &mut Vec<u8>, v: &toml::Value) {
    match v {
        toml::Value::String(s) => string(out, s),
        toml::Value::Integer(i) => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
        toml::Value::Float(f) => {
            let bits = if f.is_nan() {
                GO_NAN | (f.to_bits() & (1 << 63))
            } else {
                f.to_bits()
            };
            out.push(0xcb);
            out.extend_from_slice(&bits.to_be_bytes());
        }
        toml::Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        toml::Value::Datetime(d) => timestamp(out, d),
        toml::Value::Array(items) => {
            length(out, items.len(), 0x90, 16, 0xdc, 0xdd);
            for item in items {
                value(out, item);
            }
        }
        toml::Value::Table(t) => map(out, t),
    }
}

fn map(out: &mut Vec<u8>, table: &toml::Table) {
    length(out, table.len(), 0x80, 16, 0xde, 0xdf);
    // Sorted whatever the table's own order (toml's `preserve_order` would keep the file's).
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in entries {
        string(out, k);
        value(out, v);
    }
}

/// A length header: the fix form below `fix_limit`, else 16- or 32-bit.
fn length(out: &mut Vec<u8>, n: usize, fix: u8, fix_limit: usize, wide16: u8, wide32: u8) {
    if n < fix_limit {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(wide16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(wide32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else {
        length(out, n, 0, 0, 0xda, 0xdb);
    }
    out.extend_from_slice(s.as_bytes());
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn timestamp(out: &mut Vec<u8>, d: &toml::value::Datetime) {
    let (year, month, day) = d.date.map_or((0, 1, 1), |date| {
        (
            i64::from(date.year),
            i64::from(date.month),
            i64::from(date.day),
        )
    });
    let (h, m, s, nanos) = d.time.map_or((0, 0, 0, 0), |t| {
        (
            i64::from(t.hour),
            i64::from(t.minute),
            i64::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        )
    });
    let offset_s = match d.offset {
        Some(toml::value::Offset::Custom { minutes }) => i64::from(minutes) * 60,
        _ => 0,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s - offset_s;
    let (secs, nanos) = (secs as u64, u64::from(nanos));
    if secs >> 34 == 0 {
        let data = (nanos << 34) | secs;
        if data >> 32 == 0 {
            out.extend_from_slice(&[0xd6, TIMESTAMP]);
            out.extend_from_slice(&(data as u32).to_be_bytes());
        } else {
            out.extend_from_slice(&[0xd7, TIMESTAMP]);
            out.extend_from_slice(&data.to_be_bytes());
        }
    } else {
        out.extend_from_slice(&[0xc7, 12, TIMESTAMP]);
        out.extend_from_slice(&(nanos as u32).to_be_bytes());
        out.extend_from_slice(&secs.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(source: &str) -> Vec<u8> {
        encode_table(&source.parse::<toml::Table>().expect("valid toml"))
    }

    #[test]
    fn shapes_follow_pulps_encoder() {
        assert_eq!(enc(""), [0x80]);
        assert_eq!(
            enc("a = 1"),
            [0x81, 0xa1, b'a', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(enc("a = true"), [0x81, 0xa1, b'a', 0xc3]);
        assert_eq!(enc("a = \"hi\""), [0x81, 0xa1, b'a', 0xa2, b'h', b'i']);
        assert_eq!(
            enc("a = 1.5"),
            [0x81, 0xa1, b'a', 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            enc("[a]\nb = false"),
            [0x81, 0xa1, b'a', 0x81, 0xa1, b'b', 0xc2]
        );
        let long = "x".repeat(40);
        let bytes = enc(&format!("a = \"{long}\""));
        assert_eq!(&bytes[3..5], &[0xd9, 40]);
        assert_eq!(bytes.len(), 5 + 40);
    }

    #[test]
    fn days_from_civil_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
    }
}

//! The `[config]` bytes `pulp_init` receives are Pulp's own. The expected bytes below were
//! produced by Pulp's encoding path run as a Go program: BurntSushi/toml v1.6.0 decodes the
//! manifest's `[config]` into `map[string]any` (as Pulp's `manifest.Load` does) and
//! vmihailenco/msgpack v5.4.1 `Marshal`s it (as Pulp's `EncodeConfig` does), with
//! `SetSortMapKeys(true)` so that a map of several keys comes out in one fixed order (Pulp's
//! own order is Go's map iteration order, which varies run to run; sorted is one of them).

use cellhost::manifest;

/// (what the case covers, manifest body, Pulp's bytes in hex).
const PULP_BYTES: &[(&str, &str, &str)] = &[
    (
        "the issue's marker",
        r#"[config]
marker = 424242"#,
        "81a66d61726b6572d30000000000067932",
    ),
    (
        "integers at every width boundary",
        r#"[config]
a = 0
b = 1
c = -1
d = 127
e = 128
f = -32
g = -33
h = 9223372036854775807
i = -9223372036854775808"#,
        "89a161d30000000000000000a162d30000000000000001a163d3ffffffffffffffffa164d3000000000000007fa165d30000000000000080a166d3ffffffffffffffe0a167d3ffffffffffffffdfa168d37fffffffffffffffa169d38000000000000000",
    ),
    (
        "floats, infinities, NaN",
        r#"[config]
a = 1.5
b = -0.0
c = inf
d = -inf
e = 0.1
f = 1e300
g = nan"#,
        "87a161cb3ff8000000000000a162cb8000000000000000a163cb7ff0000000000000a164cbfff0000000000000a165cb3fb999999999999aa166cb7e37e43c8800759ca167cb7ff8000000000001",
    ),
    (
        "strings at every length boundary, UTF-8",
        r#"[config]
empty = ""
short = "hi"
s31 = "0123456789012345678901234567890"
s32 = "01234567890123456789012345678901"
utf8 = "héllo ✓""#,
        "85a5656d707479a0a3733331bf30313233343536373839303132333435363738393031323334353637383930a3733332d9203031323334353637383930313233343536373839303132333435363738393031a573686f7274a26869a475746638aa68c3a96c6c6f20e29c93",
    ),
    (
        "booleans",
        r#"[config]
t = true
f = false"#,
        "82a166c2a174c3",
    ),
    (
        "arrays: empty, mixed, nested, 16 long",
        r#"[config]
empty = []
ints = [1, 2, 3]
mixed = [1, "two", 3.0, true]
nested = [[1, 2], ["a"]]
sixteen = [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]"#,
        "85a5656d70747990a4696e747393d30000000000000001d30000000000000002d30000000000000003a56d6978656494d30000000000000001a374776fcb4008000000000000c3a66e65737465649292d30000000000000001d3000000000000000291a161a77369787465656edc0010d30000000000000000d30000000000000001d30000000000000002d30000000000000003d30000000000000004d30000000000000005d30000000000000006d30000000000000007d30000000000000008d30000000000000009d3000000000000000ad3000000000000000bd3000000000000000cd3000000000000000dd3000000000000000ed3000000000000000f",
    ),
    (
        "nested tables",
        r#"[config]
[config.db]
host = "localhost"
port = 5432
[config.db.pool]
size = 4"#,
        "81a2646283a4686f7374a96c6f63616c686f7374a4706f6f6c81a473697a65d30000000000000004a4706f7274d30000000000001538",
    ),
    (
        "inline tables and arrays of tables",
        r#"[config]
inline = { x = 1, y = { z = "deep" } }
[[config.peers]]
name = "a"
weight = 0.5
[[config.peers]]
name = "b""#,
        "82a6696e6c696e6582a178d30000000000000001a17981a17aa464656570a570656572739282a46e616d65a161a6776569676874cb3fe000000000000081a46e616d65a162",
    ),
    (
        "datetimes: offset, local, date, time, fractions, past 2^34 s",
        r#"[config]
odt = 1979-05-27T07:32:00Z
odt_frac = 1979-05-27T00:32:00.999999-07:00
ldt = 1979-05-27T07:32:00
ld = 1979-05-27
lt = 07:32:00
lt_frac = 00:32:00.5
late = 2500-01-01T00:00:00Z"#,
        "87a46c617465d7ff00000003e4e6b080a26c64d6ff11aded80a36c6474d6ff11ae5770a26c74c70cff00000000fffffff1868bedf0a76c745f66726163c70cff1dcd6500fffffff1868b8b80a36f6474d6ff11ae5770a86f64745f66726163d7ffee6b186011ae5770",
    ),
    (
        "a map of 17 entries",
        r#"[config]
k00 = 0
k01 = 1
k02 = 2
k03 = 3
k04 = 4
k05 = 5
k06 = 6
k07 = 7
k08 = 8
k09 = 9
k10 = 10
k11 = 11
k12 = 12
k13 = 13
k14 = 14
k15 = 15
k16 = 16"#,
        "de0011a36b3030d30000000000000000a36b3031d30000000000000001a36b3032d30000000000000002a36b3033d30000000000000003a36b3034d30000000000000004a36b3035d30000000000000005a36b3036d30000000000000006a36b3037d30000000000000007a36b3038d30000000000000008a36b3039d30000000000000009a36b3130d3000000000000000aa36b3131d3000000000000000ba36b3132d3000000000000000ca36b3133d3000000000000000da36b3134d3000000000000000ea36b3135d3000000000000000fa36b3136d30000000000000010",
    ),
    (
        "strings of 200 and 300 bytes",
        r#"[config]
long = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
mid = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy""#,
        "82a46c6f6e67da012c787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878787878a36d6964d9c87979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979",
    ),
    (
        "NaN signs",
        r#"[config]
n = nan
p = +nan
m = -nan"#,
        "83a16dcbfff8000000000001a16ecb7ff8000000000001a170cb7ff8000000000001",
    ),
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn config_bytes_match_pulps_encoder() {
    for (what, body, want) in PULP_BYTES {
        let spec = manifest::parse(&format!("name = \"c\"\nversion = \"1\"\n{body}"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let got = hex(&cellhost::msgpack::encode_table(&spec.config));
        assert_eq!(&got, want, "{what}");
    }
}

#[test]
fn a_marker_goes_out_as_int64_as_pulps_heartbeat_reads_it() {
    let spec = manifest::parse("name = \"c\"\nversion = \"1\"\n[config]\nmarker = 424242")
        .expect("manifest parses");
    let bytes = cellhost::msgpack::encode_table(&spec.config);
    assert_eq!(&bytes[8..], &[0xd3, 0, 0, 0, 0, 0, 0x06, 0x79, 0x32]);
}

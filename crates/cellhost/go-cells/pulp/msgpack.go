package pulp

import (
	"encoding/binary"
	"errors"
	"math"
)

var errShort = errors.New("msgpack: truncated")

// Decode reads one MessagePack value: nil, bool, int64 (every integer form), float64,
// string, []any, map[string]any. Enough for a [config] table.
func Decode(b []byte) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errShort
	}
	c, b := b[0], b[1:]
	switch {
	case c <= 0x7f:
		return int64(c), b, nil
	case c >= 0xe0:
		return int64(int8(c)), b, nil
	case c&0xf0 == 0x80:
		return decodeMap(b, int(c&0x0f))
	case c&0xf0 == 0x90:
		return decodeArray(b, int(c&0x0f))
	case c&0xe0 == 0xa0:
		return decodeString(b, int(c&0x1f))
	}
	fixed := func(n int) ([]byte, []byte, error) {
		if len(b) < n {
			return nil, nil, errShort
		}
		return b[:n], b[n:], nil
	}
	switch c {
	case 0xc0:
		return nil, b, nil
	case 0xc2:
		return false, b, nil
	case 0xc3:
		return true, b, nil
	case 0xcc, 0xd0:
		v, rest, err := fixed(1)
		if err != nil {
			return nil, nil, err
		}
		if c == 0xcc {
			return int64(v[0]), rest, nil
		}
		return int64(int8(v[0])), rest, nil
	case 0xcd, 0xd1:
		v, rest, err := fixed(2)
		if err != nil {
			return nil, nil, err
		}
		u := binary.BigEndian.Uint16(v)
		if c == 0xcd {
			return int64(u), rest, nil
		}
		return int64(int16(u)), rest, nil
	case 0xce, 0xd2:
		v, rest, err := fixed(4)
		if err != nil {
			return nil, nil, err
		}
		u := binary.BigEndian.Uint32(v)
		if c == 0xce {
			return int64(u), rest, nil
		}
		return int64(int32(u)), rest, nil
	case 0xcf, 0xd3:
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return int64(binary.BigEndian.Uint64(v)), rest, nil
	case 0xcb:
		v, rest, err := fixed(8)
		if err != nil {
			return nil, nil, err
		}
		return math.Float64frombits(binary.BigEndian.Uint64(v)), rest, nil
	case 0xd9, 0xda, 0xdb:
		size := map[byte]int{0xd9: 1, 0xda: 2, 0xdb: 4}[c]
		n, rest, err := length(b, size)
		if err != nil {
			return nil, nil, err
		}
		return decodeString(rest, n)
	case 0xdc, 0xdd:
		n, rest, err := length(b, map[byte]int{0xdc: 2, 0xdd: 4}[c])
		if err != nil {
			return nil, nil, err
		}
		return decodeArray(rest, n)
	case 0xde, 0xdf:
		n, rest, err := length(b, map[byte]int{0xde: 2, 0xdf: 4}[c])
		if err != nil {
			return nil, nil, err
		}
		return decodeMap(rest, n)
	}
	return nil, nil, errors.New("msgpack: unsupported type")
}

func length(b []byte, size int) (int, []byte, error) {
	if len(b) < size {
		return 0, nil, errShort
	}
	var n uint64
	for _, x := range b[:size] {
		n = n<<8 | uint64(x)
	}
	if n > uint64(len(b)) {
		return 0, nil, errShort
	}
	return int(n), b[size:], nil
}

func decodeString(b []byte, n int) (any, []byte, error) {
	if len(b) < n {
		return nil, nil, errShort
	}
	return string(b[:n]), b[n:], nil
}

func decodeArray(b []byte, n int) (any, []byte, error) {
	out := make([]any, 0, min(n, len(b)))
	for i := 0; i < n; i++ {
		v, rest, err := Decode(b)
		if err != nil {
			return nil, nil, err
		}
		out, b = append(out, v), rest
	}
	return out, b, nil
}

func decodeMap(b []byte, n int) (any, []byte, error) {
	out := make(map[string]any, min(n, len(b)))
	for i := 0; i < n; i++ {
		k, rest, err := Decode(b)
		if err != nil {
			return nil, nil, err
		}
		key, ok := k.(string)
		if !ok {
			return nil, nil, errors.New("msgpack: map key is not a string")
		}
		v, rest, err := Decode(rest)
		if err != nil {
			return nil, nil, err
		}
		out[key], b = v, rest
	}
	return out, b, nil
}

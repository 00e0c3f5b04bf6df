// caller: a step whose payload names a cell calls that cell's pulp_on_call through pulp_call
// and returns the count it answers (an 8-byte little-endian integer), or the negated code.
package main

import (
	"encoding/binary"

	"cellhost.test/gocells/pulp"
)

func init() {
	pulp.Serve(pulp.Cell{
		Step: func(env pulp.Envelope) int32 {
			if len(env.Payload) == 0 {
				return 0
			}
			resp, code := pulp.CallSibling(string(env.Payload), "get", nil)
			if code != 0 {
				return -int32(code)
			}
			if len(resp) != 8 {
				return -1000
			}
			return int32(binary.LittleEndian.Uint64(resp))
		},
	})
}

func main() {}

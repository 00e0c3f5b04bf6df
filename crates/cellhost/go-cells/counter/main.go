// counter: counts its steps and the sibling calls it serves. Its [config] marker must arrive
// as an int64, as Pulp's heartbeat cell reads it.
package main

import (
	"encoding/binary"
	"fmt"

	"cellhost.test/gocells/pulp"
)

var (
	count  int64
	marker int64 = -1
)

func init() {
	pulp.Serve(pulp.Cell{
		Init: func(cfg map[string]any) int32 {
			if v, present := cfg["marker"]; present {
				m, ok := v.(int64)
				if !ok {
					fmt.Printf("counter: marker is a %T, not an int64\n", v)
					return 7
				}
				marker = m
			}
			fmt.Printf("counter: ready, marker %d\n", marker)
			return 0
		},
		Step: func(env pulp.Envelope) int32 {
			count++
			return int32(count)
		},
		Call: func(function string, args []byte) ([]byte, uint32) {
			count++
			out := make([]byte, 8)
			binary.LittleEndian.PutUint64(out, uint64(count))
			return out, pulp.CallOK
		},
		Shutdown: func() int32 {
			fmt.Printf("counter: shutting down after %d\n", count)
			return 0
		},
	})
}

// probe_config_marker is the diagnostic Pulp's host reads to check that [config] arrived.
//
//go:wasmexport probe_config_marker
func probeConfigMarker() int64 { return marker }

func main() {}

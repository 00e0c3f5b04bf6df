// caps: uses the host's capabilities through //go:wasmimport. The step payload is a command:
// "put" and "get" (storage.kv), "send:<cell>" and "recv" (channel), "log" (logging), "clock"
// (the host clock against Go's own time.Now, both virtual in simulation), "rand" (WASI
// random_get through crypto/rand).
package main

import (
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"cellhost.test/gocells/pulp"
)

func step(env pulp.Envelope) int32 {
	cmd := string(env.Payload)
	switch {
	case cmd == "put":
		return pulp.KvPut([]byte("greeting"), []byte(fmt.Sprintf("hello #%d", env.CallNumber)))
	case cmd == "get":
		v, n := pulp.KvGet([]byte("greeting"))
		if n < 0 {
			return int32(n)
		}
		fmt.Printf("caps: kv greeting = %q\n", v)
		return int32(len(v))
	case strings.HasPrefix(cmd, "send:"):
		return pulp.Send(strings.TrimPrefix(cmd, "send:"), []byte("ping"))
	case cmd == "recv":
		m, n := pulp.Recv()
		if n < 0 {
			return int32(n)
		}
		fmt.Printf("caps: received %q\n", m)
		return int32(len(m))
	case cmd == "log":
		return pulp.Log("caps: a line through pulp_log")
	case cmd == "clock":
		host := pulp.ClockNs()
		wall := time.Now().UnixNano()
		fmt.Printf("caps: host clock %d, time.Now %d\n", host, wall)
		return 0
	case cmd == "rand":
		b := make([]byte, 8)
		if _, err := rand.Read(b); err != nil {
			return -1
		}
		fmt.Printf("caps: random %x\n", b)
		return int32(len(b))
	}
	return -2
}

func init() {
	pulp.Serve(pulp.Cell{Step: step})
}

func main() {}

// panicker: a step with payload "boom" panics; Go's runtime prints the panic to stderr and
// ends the module with proc_exit(2). Its manifest asks for restart = "on_crash".
package main

import (
	"fmt"

	"cellhost.test/gocells/pulp"
)

var inits int32

func init() {
	pulp.Serve(pulp.Cell{
		Init: func(map[string]any) int32 {
			inits++
			fmt.Printf("panicker: init #%d\n", inits)
			return 0
		},
		Step: func(env pulp.Envelope) int32 {
			if string(env.Payload) == "boom" {
				panic("boom")
			}
			return inits
		},
	})
}

func main() {}

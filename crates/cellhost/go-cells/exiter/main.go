// exiter: a step with payload "exit" calls os.Exit(3) (WASI proc_exit(3)).
package main

import (
	"os"

	"cellhost.test/gocells/pulp"
)

func init() {
	pulp.Serve(pulp.Cell{
		Step: func(env pulp.Envelope) int32 {
			if string(env.Payload) == "exit" {
				os.Exit(3)
			}
			return 1
		},
	})
}

func main() {}

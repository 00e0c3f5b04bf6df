// churn: goroutines, channels, timers and the garbage collector inside one step. "work" fans
// out to eight goroutines that each build and drop a map and some slices (one sleeps first,
// which parks every goroutine and makes the runtime poll its timer), then collects; "sleep"
// sleeps in the step itself; "spin" loops without ever yielding; anything else counts.
package main

import (
	"runtime"
	"sync"
	"time"

	"cellhost.test/gocells/pulp"
)

var (
	steps int32
	sink  uint64
)

func work(gc bool) int32 {
	results := make(chan uint64, 8)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			if g == 0 {
				time.Sleep(2 * time.Millisecond)
			}
			m := make(map[int][]byte, 64)
			var sum uint64
			for i := 0; i < 300; i++ {
				b := make([]byte, 64+i%64)
				b[0] = byte(i + g)
				m[i%64] = b
				sum += uint64(b[0])
			}
			results <- sum
		}(g)
	}
	wg.Wait()
	close(results)
	var total uint64
	for r := range results {
		total += r
	}
	if gc {
		runtime.GC()
	}
	return int32(total % 1_000_000)
}

func step(env pulp.Envelope) int32 {
	switch string(env.Payload) {
	case "work":
		return work(true)
	case "alloc":
		return work(false)
	case "sleep":
		start := time.Now()
		time.Sleep(10 * time.Millisecond)
		if time.Since(start) >= 10*time.Millisecond {
			return 1
		}
		return 0
	case "spin":
		for {
			sink++
		}
	}
	steps++
	return steps
}

func init() {
	pulp.Serve(pulp.Cell{Step: step})
}

func main() {}

// Package pulp is this repository's own minimal cell SDK for the Pulp ABI: it exports the
// allocator and the lifecycle functions a Pulp host calls, hands each call to the Cell a
// program registers, and wraps the host's imports. Test cells only; not Pulp's SDK.
package pulp

import (
	"encoding/binary"
	"unsafe"
)

// Envelope is the input of one pulp_step.
type Envelope struct {
	CallNumber uint64
	WallTimeNs uint64
	Payload    []byte
}

// Cell is what a program implements; nil functions answer as an empty cell would.
type Cell struct {
	Init     func(config map[string]any) int32
	Step     func(env Envelope) int32
	Call     func(function string, args []byte) ([]byte, uint32)
	Shutdown func() int32
}

var cell Cell

// Serve registers the program's cell (call it from an init function).
func Serve(c Cell) { cell = c }

// live pins every buffer handed to the host until it is freed: the garbage collector must
// not reclaim or move memory the host is about to read or write.
var live = map[uint32][]byte{}

//go:wasmexport pulp_alloc
func pulpAlloc(size uint32) uint32 {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	p := uint32(uintptr(unsafe.Pointer(&b[0])))
	live[p] = b
	return p
}

//go:wasmexport pulp_free
func pulpFree(ptr, size uint32) {
	delete(live, ptr)
}

// bytesAt copies len bytes of linear memory at ptr.
func bytesAt(ptr, n uint32) []byte {
	if n == 0 {
		return nil
	}
	src := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
	out := make([]byte, n)
	copy(out, src)
	return out
}

// pin keeps b for the host and returns its address (0 for an empty slice).
func pin(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	p := uint32(uintptr(unsafe.Pointer(&b[0])))
	live[p] = b
	return p
}

func addr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

//go:wasmexport pulp_init
func pulpInit(ptr, n uint32) int32 {
	var cfg map[string]any
	if n > 0 {
		v, _, err := Decode(bytesAt(ptr, n))
		if err != nil {
			return -2
		}
		m, ok := v.(map[string]any)
		if !ok {
			return -3
		}
		cfg = m
	}
	if cell.Init == nil {
		return 0
	}
	return cell.Init(cfg)
}

//go:wasmexport pulp_step
func pulpStep(ptr, n uint32) int32 {
	raw := bytesAt(ptr, n)
	if len(raw) < 20 {
		return -1
	}
	env := Envelope{
		CallNumber: binary.LittleEndian.Uint64(raw[0:]),
		WallTimeNs: binary.LittleEndian.Uint64(raw[8:]),
	}
	size := binary.LittleEndian.Uint32(raw[16:])
	if uint64(size) > uint64(len(raw)-20) {
		return -1
	}
	env.Payload = raw[20 : 20+size]
	if cell.Step == nil {
		return 0
	}
	return cell.Step(env)
}

//go:wasmexport pulp_shutdown
func pulpShutdown() int32 {
	if cell.Shutdown == nil {
		return 0
	}
	return cell.Shutdown()
}

// Codes of pulp_on_call.
const (
	CallOK       = 0
	NoProvider   = 10
	ProviderFail = 11
)

//go:wasmexport pulp_on_call
func pulpOnCall(namePtr, nameLen, argsPtr, argsLen, respPtrOut, respLenOut uint32) uint32 {
	if cell.Call == nil {
		return NoProvider
	}
	resp, code := cell.Call(string(bytesAt(namePtr, nameLen)), bytesAt(argsPtr, argsLen))
	if code != CallOK {
		return code
	}
	p := pin(resp)
	out := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(respPtrOut))), 4)
	binary.LittleEndian.PutUint32(out, p)
	out = unsafe.Slice((*byte)(unsafe.Pointer(uintptr(respLenOut))), 4)
	binary.LittleEndian.PutUint32(out, uint32(len(resp)))
	return CallOK
}

package pulp

import (
	"encoding/binary"
	"runtime"
)

//go:wasmimport pulp pulp_call
func pulpCall(targetPtr, targetLen, namePtr, nameLen, argsPtr, argsLen, respPtrOut, respLenOut uint32) uint32

//go:wasmimport pulp pulp_log
func pulpLog(ptr, n uint32) int32

//go:wasmimport pulp pulp_kv_get
func pulpKvGet(keyPtr, keyLen, bufPtr, bufLen uint32) int64

//go:wasmimport pulp pulp_kv_put
func pulpKvPut(keyPtr, keyLen, valPtr, valLen uint32) int32

//go:wasmimport pulp pulp_send
func pulpSend(toPtr, toLen, msgPtr, msgLen uint32) int32

//go:wasmimport pulp pulp_recv
func pulpRecv(bufPtr, bufLen uint32) int64

//go:wasmimport pulp pulp_clock_ns
func pulpClockNs() int64

// CallSibling calls function on cell target; the code is pulp_call's (0 on success).
func CallSibling(target, function string, args []byte) ([]byte, uint32) {
	t, f := []byte(target), []byte(function)
	out := make([]byte, 8)
	code := pulpCall(addr(t), uint32(len(t)), addr(f), uint32(len(f)), addr(args), uint32(len(args)), addr(out), addr(out)+4)
	runtime.KeepAlive(t)
	runtime.KeepAlive(f)
	runtime.KeepAlive(args)
	if code != 0 {
		return nil, code
	}
	p, n := binary.LittleEndian.Uint32(out), binary.LittleEndian.Uint32(out[4:])
	resp := bytesAt(p, n)
	delete(live, p)
	return resp, 0
}

// Log writes a line to the host's log for this cell.
func Log(msg string) int32 {
	b := []byte(msg)
	code := pulpLog(addr(b), uint32(len(b)))
	runtime.KeepAlive(b)
	return code
}

// KvPut stores value under key (capability storage.kv).
func KvPut(key, value []byte) int32 {
	code := pulpKvPut(addr(key), uint32(len(key)), addr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
	return code
}

// KvGet reads key; a negative result is the host's negated code.
func KvGet(key []byte) ([]byte, int64) {
	buf := make([]byte, 256)
	n := pulpKvGet(addr(key), uint32(len(key)), addr(buf), uint32(len(buf)))
	runtime.KeepAlive(key)
	if n < 0 {
		return nil, n
	}
	return buf[:n], n
}

// Send queues msg for cell to (capability channel).
func Send(to string, msg []byte) int32 {
	t := []byte(to)
	code := pulpSend(addr(t), uint32(len(t)), addr(msg), uint32(len(msg)))
	runtime.KeepAlive(t)
	runtime.KeepAlive(msg)
	return code
}

// Recv takes one queued message; a negative result is the host's negated code.
func Recv() ([]byte, int64) {
	buf := make([]byte, 256)
	n := pulpRecv(addr(buf), uint32(len(buf)))
	if n < 0 {
		return nil, n
	}
	return buf[:n], n
}

// ClockNs is the host's clock.
func ClockNs() int64 { return pulpClockNs() }

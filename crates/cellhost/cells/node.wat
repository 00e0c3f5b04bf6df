;; A general test cell: counts its steps and calls, and relays sibling calls along a path.
;;
;; pulp_step(envelope): an idle tick (empty payload) counts and returns the count. A payload is a
;; path "b/c/..." : call cell b with args "c/..." and return the value it answers (a negative
;; value is a pulp_call code, negated). A payload "!kv" writes a key with pulp_kv_put (a gated
;; capability) and returns its code; "@x" sends "hi" to cell x's mailbox (pulp_send, gated) and
;; returns its code; "?" receives one message (pulp_recv) and returns its length or a negated
;; code.
;; pulp_on_call(name, args): empty args answer the count (8 bytes, i64 LE); args "c/..." relay
;; the call to c with the rest of the path and pass its answer back.
(module
  (import "pulp" "pulp_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "pulp" "pulp_kv_put" (func $kv_put (param i32 i32 i32 i32) (result i32)))
  (import "pulp" "pulp_log" (func $log (param i32 i32) (result i32)))
  (import "pulp" "pulp_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "pulp" "pulp_recv" (func $recv (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $count (mut i64) (i64.const 0))
  (global $ready (mut i32) (i32.const 0))
  ;; Scratch: out-params of pulp_call at 16 and 20; "get" at 32; "k" at 40; "v" at 48.
  (data (i32.const 32) "get")
  (data (i32.const 40) "k")
  (data (i32.const 48) "v")
  (data (i32.const 64) "step before init")
  (data (i32.const 56) "hi")
@alloc
  ;; Logs its config (MessagePack) as it arrived, so a test can see the bytes.
  (func (export "pulp_init") (param $cfg i32) (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 0))
      (then (drop (call $log (local.get $cfg) (local.get $len)))))
    (global.set $ready (i32.const 1))
    (i32.const 0))
  (func (export "pulp_shutdown") (result i32)
    (global.set $ready (i32.const 0))
    (i32.const 0))
  ;; Index of the first '/' in [ptr, ptr+len), or len.
  (func $slash (param $ptr i32) (param $len i32) (result i32)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $ptr) (local.get $i))) (i32.const 47)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (local.get $i))
  ;; Calls the head of the path with its tail; returns the answer (negated code on failure) and
  ;; frees the response buffer.
  (func $follow (param $ptr i32) (param $len i32) (result i64)
    (local $cut i32) (local $rest i32) (local $rc i32) (local $value i64)
    (local.set $cut (call $slash (local.get $ptr) (local.get $len)))
    (local.set $rest (i32.sub (local.get $len) (local.get $cut)))
    (if (i32.gt_u (local.get $rest) (i32.const 0))
      (then (local.set $rest (i32.sub (local.get $rest) (i32.const 1)))))
    (local.set $rc (call $call
      (local.get $ptr) (local.get $cut)
      (i32.const 32) (i32.const 3)
      (i32.add (i32.add (local.get $ptr) (local.get $cut)) (i32.const 1)) (local.get $rest)
      (i32.const 16) (i32.const 20)))
    (if (i32.ne (local.get $rc) (i32.const 0))
      (then (return (i64.sub (i64.const 0) (i64.extend_i32_u (local.get $rc))))))
    (if (i32.lt_u (i32.load (i32.const 20)) (i32.const 8))
      (then (return (i64.const -1000))))
    (local.set $value (i64.load (i32.load (i32.const 16))))
    (call $free (i32.load (i32.const 16)) (i32.load (i32.const 20)))
    (local.get $value))
  (func (export "pulp_step") (param $ptr i32) (param $len i32) (result i32)
    (local $plen i32)
    (if (i32.eqz (global.get $ready))
      (then (drop (call $log (i32.const 64) (i32.const 16))) (return (i32.const -2000))))
    (local.set $plen (i32.load (i32.add (local.get $ptr) (i32.const 16))))
    (if (i32.eqz (local.get $plen))
      (then
        (global.set $count (i64.add (global.get $count) (i64.const 1)))
        (return (i32.wrap_i64 (global.get $count)))))
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 20))) (i32.const 33))
      (then (return (call $kv_put (i32.const 40) (i32.const 1) (i32.const 48) (i32.const 1)))))
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 20))) (i32.const 64))
      (then (return (call $send
        (i32.add (local.get $ptr) (i32.const 21)) (i32.sub (local.get $plen) (i32.const 1))
        (i32.const 56) (i32.const 2)))))
    (if (i32.eq (i32.load8_u (i32.add (local.get $ptr) (i32.const 20))) (i32.const 63))
      (then (return (i32.wrap_i64 (call $recv (i32.const 80) (i32.const 16))))))
    (i32.wrap_i64 (call $follow (i32.add (local.get $ptr) (i32.const 20)) (local.get $plen))))
  (func (export "pulp_on_call")
      (param $name i32) (param $name_len i32) (param $args i32) (param $args_len i32)
      (param $resp_ptr i32) (param $resp_len i32) (result i32)
    (local $value i64) (local $out i32)
    (if (i32.eqz (local.get $args_len))
      (then
        (global.set $count (i64.add (global.get $count) (i64.const 1)))
        (local.set $value (global.get $count)))
      (else
        (local.set $value (call $follow (local.get $args) (local.get $args_len)))))
    (local.set $out (call $alloc (i32.const 8)))
    (if (i32.eqz (local.get $out)) (then (return (i32.const 11))))
    (i64.store (local.get $out) (local.get $value))
    (i32.store (local.get $resp_ptr) (local.get $out))
    (i32.store (local.get $resp_len) (i32.const 8))
    (i32.const 0))
)

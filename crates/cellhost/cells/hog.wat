;; A cell that allocates 256 KiB on every step and never frees it: the host's memory limit must
;; stop it with a typed error, not let it grow without bound.
(module
  (memory (export "memory") 1)
@alloc
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (if (i32.eqz (call $alloc (i32.const 262144))) (then (return (i32.const -1))))
    (i32.const 1))
)

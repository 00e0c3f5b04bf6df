;; A cell whose step and sibling calls loop forever; only the host's fuel budget ends them.
(module
  (memory (export "memory") 1)
@alloc
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
  (func (export "pulp_on_call") (param i32 i32 i32 i32 i32 i32) (result i32)
    (loop $forever (br $forever))
    (i32.const 0))
)

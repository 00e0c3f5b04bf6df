;; A cell whose step traps (an `unreachable`), after a first step that succeeds.
(module
  (memory (export "memory") 1)
  (global $steps (mut i32) (i32.const 0))
@alloc
  (func (export "pulp_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "pulp_shutdown") (result i32) (i32.const 0))
  (func (export "pulp_step") (param i32 i32) (result i32)
    (global.set $steps (i32.add (global.get $steps) (i32.const 1)))
    (if (i32.gt_u (global.get $steps) (i32.const 1)) (then unreachable))
    (i32.const 1))
  (func (export "pulp_on_call") (param i32 i32 i32 i32 i32 i32) (result i32) unreachable)
)

# The test interface of our RPC scenarios and interop tests: a capability that records the order
# in which calls reach it, so that an oracle can check E-order at the target.
#
# Written for this project (not copied from any upstream sample). Regenerate the Rust code with
# `scripts/regen-capnp.sh`.

@0xbe1809186a357de3;

interface Probe {
  call @0 (ref :UInt64, seq :UInt64, arg :Probe) -> (n :UInt64, cap :Probe);
  # Records that call `seq` made on the caller's reference `ref` arrived here, then answers
  # with `n`, the number of calls that arrived here before this one, and a capability `cap`
  # chosen by the implementation (usually `arg` echoed back, or a fresh probe when `arg` is
  # null), so that callers can pipeline on it.

  getCallSequence @1 (expected :UInt32) -> (n :UInt32);
  # Returns the number of calls (of either method) that arrived here before this one. A
  # caller that knows how many calls it made can check that none overtook another, as in the
  # TestCallOrder idiom of the C++ and Rust test suites.
}

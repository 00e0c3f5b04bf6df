//! What libc would give a freestanding program: `memcpy` and friends (the compiler emits calls
//! to them), and the kernel heap behind `alloc`.
//!
//! The heap is segregated free lists of power-of-two blocks carved from a static arena: one vCPU,
//! and interrupt handlers never allocate, so no lock is needed. Blocks are never coalesced; the
//! workloads allocate a few sizes over and over, which this serves in O(1).
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract (valid, non-overlapping ranges); `rep movsb` copies forward.
    unsafe {
        core::arch::asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _, options(nostack, preserves_flags));
    }
    dest
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: forward copy is correct when the destination starts before the source or
        // past its end.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: overlapping with dest after src: copy backward (direction flag set and cleared).
    unsafe {
        core::arch::asm!(
            "std", "rep movsb", "cld",
            inout("rcx") n => _,
            inout("rdi") dest.add(n - 1) => _,
            inout("rsi") src.add(n - 1) => _,
            options(nostack),
        );
    }
    dest
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract (a valid range).
    unsafe {
        core::arch::asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") value as u8, options(nostack, preserves_flags));
    }
    dest
}

#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller's contract (valid ranges of n bytes).
        let (x, y) = unsafe { (a.add(i).read(), b.add(i).read()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

const ARENA_SIZE: usize = 16 << 20;
/// Blocks from 16 bytes (class 4) to 4 MiB (class 22).
const MIN_CLASS: u32 = 4;
const MAX_CLASS: u32 = 22;
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;

#[repr(C, align(4096))]
struct Arena([u8; ARENA_SIZE]);

struct Heap {
    arena: UnsafeCell<Arena>,
    state: UnsafeCell<HeapState>,
}

struct HeapState {
    used: usize,
    /// Heads of the free lists; a free block stores the next block's address in its first word.
    free: [usize; CLASSES],
}

// SAFETY: one vCPU and no allocation from interrupt handlers: never accessed concurrently.
unsafe impl Sync for Heap {}

#[global_allocator]
static HEAP: Heap = Heap {
    arena: UnsafeCell::new(Arena([0; ARENA_SIZE])),
    state: UnsafeCell::new(HeapState {
        used: 0,
        free: [0; CLASSES],
    }),
};

fn class_of(layout: Layout) -> Option<u32> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    let class = size.next_power_of_two().trailing_zeros();
    (class <= MAX_CLASS && layout.align() <= 4096).then_some(class)
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return core::ptr::null_mut();
        };
        // SAFETY: not concurrent (see `Sync`), and no reference outlives this call.
        let state = unsafe { &mut *self.state.get() };
        let slot = (class - MIN_CLASS) as usize;
        let head = state.free[slot];
        if head != 0 {
            // SAFETY: `head` is a block this heap handed out and got back; its first word
            // holds the next free block.
            state.free[slot] = unsafe { (head as *const usize).read() };
            return head as *mut u8;
        }
        let size = 1usize << class;
        let align = size.min(4096);
        let base = self.arena.get() as usize;
        let start = (base + state.used).next_multiple_of(align);
        if start + size > base + ARENA_SIZE {
            return core::ptr::null_mut();
        }
        state.used = start + size - base;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            return;
        };
        // SAFETY: as in `alloc`; `ptr` came from `alloc` with this layout, so it is a block of
        // this class, at least a word long and aligned.
        unsafe {
            let state = &mut *self.state.get();
            let slot = (class - MIN_CLASS) as usize;
            (ptr as *mut usize).write(state.free[slot]);
            state.free[slot] = ptr as usize;
        }
    }
}

/// The precompiled `alloc` and `core` carry unwind tables naming this symbol; with
/// `panic = "abort"` nothing unwinds, so it is never called.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// Referenced by the precompiled `alloc`'s cleanup paths, which run only while unwinding; with
/// `panic = "abort"` no unwinding ever starts.
#[unsafe(no_mangle)]
extern "C" fn _Unwind_Resume() -> ! {
    crate::arch::exit(102)
}

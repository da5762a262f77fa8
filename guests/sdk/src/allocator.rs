//! The guest's global allocator.
//!
//! Why: the SDK hands a stage owned `Event` values (its trait methods take
//! them), so every event crossing into a guest is a handful of allocations
//! and frees inside the guest. With wasi-libc's dlmalloc those were ~15 % of
//! the whole pipeline's CPU in the end-to-end benchmark; Talc is a faster
//! drop-in for WebAssembly. A plugin that brings its own
//! `#[global_allocator]` turns the SDK's `talc` feature off.

#[cfg(all(
    feature = "talc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

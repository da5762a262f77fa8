;; memory-hoarder: a validator (core module, wrapped into a component by
;; tests/components/build.rs) with eight extra linear memories, each grown
;; by 8 MiB on the first `validate` call. Each memory stays under a
;; per-memory cap of 64 MiB; together (64 MiB + the main memory) they pass
;; the plugin's whole memory budget, which counts all memories.
(module
  (memory (export "memory") 1)
  (memory $m1 0) (memory $m2 0) (memory $m3 0) (memory $m4 0)
  (memory $m5 0) (memory $m6 0) (memory $m7 0) (memory $m8 0)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "memory-hoarder")
  (data (i32.const 32) "0.1.0")

  ;; A bump allocator: never frees, grows memory as needed.
  (func $alloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.lt_s
              (memory.grow
                (i32.add
                  (i32.shr_u (i32.sub (local.get $end) (local.get $have)) (i32.const 16))
                  (i32.const 1)))
              (i32.const 0))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (if (local.get $old)
      (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
    (local.get $p))

  ;; info: plugin-info { name, version } at 64.
  (func (export "info") (result i32)
    (i32.store (i32.const 64) (i32.const 16))
    (i32.store (i32.const 68) (i32.const 14))
    (i32.store (i32.const 72) (i32.const 32))
    (i32.store (i32.const 76) (i32.const 5))
    (i32.const 64))

  ;; init: ok(()) at 96.
  (func (export "init") (result i32)
    (i32.store8 (i32.const 96) (i32.const 0))
    (i32.const 96))

  ;; validate: grow every extra memory to 8 MiB (a failed grow traps), then
  ;; accept every event (a zeroed 12-byte verdict is `accept`).
  (func (export "validate") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $bytes i32)
    (if (i32.eqz (memory.size $m1)) (then
      (if (i32.lt_s (memory.grow $m1 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m2 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m3 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m4 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m5 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m6 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m7 (i32.const 128)) (i32.const 0)) (then unreachable))
      (if (i32.lt_s (memory.grow $m8 (i32.const 128)) (i32.const 0)) (then unreachable))))
    (local.set $bytes (i32.mul (local.get $len) (i32.const 12)))
    (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 4) (local.get $bytes)))
    (memory.fill (local.get $out) (i32.const 0) (local.get $bytes))
    (i32.store (i32.const 128) (local.get $out))
    (i32.store (i32.const 132) (local.get $len))
    (i32.const 128))
)

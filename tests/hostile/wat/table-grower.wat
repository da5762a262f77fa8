;; table-grower: a validator (core module, wrapped into a component by
;; tests/components/build.rs) that grows its function table by 1 Mi
;; elements on every `validate` call. Wasmtime allocates table elements on
;; the host, so without a cap on tables a guest could take the host's
;; memory this way. Each call adds 16 MiB to what the host counts against
;; the plugin's memory budget (16 bytes an element).
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) "table-grower")
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
    (i32.store (i32.const 68) (i32.const 12))
    (i32.store (i32.const 72) (i32.const 32))
    (i32.store (i32.const 76) (i32.const 5))
    (i32.const 64))

  ;; init: ok(()) at 96.
  (func (export "init") (result i32)
    (i32.store8 (i32.const 96) (i32.const 0))
    (i32.const 96))

  ;; validate: grow the table, then accept every event (a zeroed 12-byte
  ;; verdict is `accept`).
  (func (export "validate") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $bytes i32)
    (if (i32.lt_s (table.grow $t (ref.null func) (i32.const 1048576)) (i32.const 0))
      (then unreachable))
    (local.set $bytes (i32.mul (local.get $len) (i32.const 12)))
    (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 4) (local.get $bytes)))
    (memory.fill (local.get $out) (i32.const 0) (local.get $bytes))
    (i32.store (i32.const 128) (local.get $out))
    (i32.store (i32.const 132) (local.get $len))
    (i32.const 128))
)

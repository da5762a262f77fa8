"""fraction-sampler in Python: keeps the same events as the Rust
``guests/fraction-sampler`` (see its README for the hash):

fraction              share of events kept, 0..1 (default 1)
max_per_source_per_s  most events kept per source per second (unset: no cap)
"""

from typing import Dict, List, Tuple

import wit_world
from halyard_plugin import Config, Event, PluginInfo, init_error

_MASK = (1 << 64) - 1
_state = None


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class _Sampler:
    def __init__(self, config: Config) -> None:
        self.fraction = config.number("fraction", 1.0)
        if not 0.0 <= self.fraction <= 1.0:
            raise init_error("fraction", f"fraction must be between 0 and 1, got {config.get('fraction')}")
        self.cap = config.integer("max_per_source_per_s", None)
        if self.cap is not None and self.cap < 1:
            raise init_error("max_per_source_per_s", "max_per_source_per_s must be at least 1")
        # source -> (bucket, kept in it)
        self.buckets: Dict[str, Tuple[int, int]] = {}

    def keep(self, e: Event) -> bool:
        if self.fraction < 1.0:
            h = splitmix64(e.id.hi ^ splitmix64(e.id.lo))
            if not h / 2.0**64 < self.fraction:
                return False
        if self.cap is None:
            return True
        bucket = e.time_ns // 1_000_000_000
        last, kept = self.buckets.get(e.source, (None, 0))
        if last == bucket:
            if kept >= self.cap:
                return False
            self.buckets[e.source] = (bucket, kept + 1)
        else:
            self.buckets[e.source] = (bucket, 1)
        return True


class WitWorld(wit_world.WitWorld):
    def info(self) -> PluginInfo:
        return PluginInfo(name="py-fraction-sampler", version="0.1.0")

    def init(self) -> None:
        global _state
        _state = _Sampler(Config())

    def sample(self, events: List[Event]) -> List[bool]:
        if _state is None:
            self.init()
        return [_state.keep(e) for e in events]

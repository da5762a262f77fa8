"""{{name}}: a Halyard validator in Python. Rejects events without a value
and readings above ``max`` (config, default 100)."""

from typing import List

import wit_world
from halyard_plugin import Config, Event, PluginInfo, Verdict_Accept, Verdict_Reject, fmt_float

_max = None


class WitWorld(wit_world.WitWorld):
    def info(self) -> PluginInfo:
        return PluginInfo(name="{{name}}", version="0.1.0")

    def init(self) -> None:
        # Config getters raise init_error(key, message): the config is refused.
        global _max
        _max = Config().number("max", 100.0)

    def validate(self, events: List[Event]) -> list:
        if _max is None:
            self.init()
        out = []
        for e in events:
            if e.value is None:
                out.append(Verdict_Reject("missing value"))
            elif e.value > _max:
                out.append(Verdict_Reject(f"value {fmt_float(e.value)} is above the maximum {fmt_float(_max)}"))
            else:
                out.append(Verdict_Accept())
        return out

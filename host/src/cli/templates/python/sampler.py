"""{{name}}: a Halyard sampler in Python. Keeps events whose kind is listed
in ``kinds`` (unset keeps every kind)."""

from typing import List

import wit_world
from halyard_plugin import Config, Event, PluginInfo, init_error

_kinds = None


class WitWorld(wit_world.WitWorld):
    def info(self) -> PluginInfo:
        return PluginInfo(name="{{name}}", version="0.1.0")

    def init(self) -> None:
        global _kinds
        config = Config()
        kinds = config.list("kinds")
        if config.get("kinds") is not None and not kinds:
            raise init_error("kinds", "kinds is set but lists no kind")
        _kinds = set(kinds)

    def sample(self, events: List[Event]) -> List[bool]:
        if _kinds is None:
            self.init()
        return [not _kinds or e.kind in _kinds for e in events]

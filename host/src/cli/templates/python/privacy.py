"""{{name}}: a Halyard privacy policy in Python. Removes the attributes
listed in ``drop_keys`` (default ``user``) and drops events whose source is
listed in ``block_sources``."""

from typing import List

import wit_world
from halyard_plugin import Action_Drop, Action_Keep, Action_Rewrite, Config, Event, PluginInfo

_policy = None


class WitWorld(wit_world.WitWorld):
    def info(self) -> PluginInfo:
        return PluginInfo(name="{{name}}", version="0.1.0")

    def init(self) -> None:
        global _policy
        config = Config()
        drop = ["user"] if config.get("drop_keys") is None else config.list("drop_keys")
        _policy = (set(drop), set(config.list("block_sources")))

    def redact(self, events: List[Event]) -> list:
        if _policy is None:
            self.init()
        drop, block = _policy
        out = []
        for e in events:
            if e.source in block:
                out.append(Action_Drop())
                continue
            kept = [a for a in e.attributes if a.key not in drop]
            if len(kept) == len(e.attributes):
                out.append(Action_Keep())
            else:
                e.attributes = kept
                out.append(Action_Rewrite(e))
        return out

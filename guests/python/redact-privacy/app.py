"""redact-privacy in Python: the attribute rules of the Rust
``guests/redact-privacy`` (see its README for the exact semantics):

drop_keys      attribute keys to remove
hash_keys      attribute keys whose value becomes "h:" + 16 hex of sha256(salt + text)
hash_source    replace the source with its hash (default false)
salt           required when hash_keys or hash_source is used
block_sources  sources whose events are dropped; "prefix*" matches a prefix

The JSON body is left alone (the Rust guest also redacts its top level).
"""

import hashlib
from typing import List

import wit_world
from halyard_plugin import (
    Action_Drop, Action_Keep, Action_Rewrite, AttrValue_Str, Config, Event,
    PluginInfo, attr_text, init_error,
)

_policy = None


class _Policy:
    def __init__(self, config: Config) -> None:
        self.drop = set(config.list("drop_keys"))
        self.hash = set(config.list("hash_keys")) - self.drop
        self.hash_source = config.bool("hash_source", False)
        self.salt = config.get("salt")
        if (self.hash or self.hash_source) and self.salt is None:
            raise init_error("salt", "salt must be set when hash_keys or hash_source is used")
        self.block = config.list("block_sources")

    def digest(self, text: str) -> str:
        return "h:" + hashlib.sha256((self.salt + text).encode()).hexdigest()[:16]

    def blocked(self, source: str) -> bool:
        for pattern in self.block:
            if pattern.endswith("*"):
                if source.startswith(pattern[:-1]):
                    return True
            elif source == pattern:
                return True
        return False

    def redact(self, event: Event):
        if self.blocked(event.source):
            return Action_Drop()
        changed = False
        attributes = []
        for a in event.attributes:
            if a.key in self.drop:
                changed = True
                continue
            if a.key in self.hash:
                a.value = AttrValue_Str(self.digest(attr_text(a.value)))
                changed = True
            attributes.append(a)
        if self.hash_source:
            event.source = self.digest(event.source)
            changed = True
        if not changed:
            return Action_Keep()
        event.attributes = attributes
        return Action_Rewrite(event)


class WitWorld(wit_world.WitWorld):
    def info(self) -> PluginInfo:
        return PluginInfo(name="py-redact-privacy", version="0.1.0")

    def init(self) -> None:
        global _policy
        _policy = _Policy(Config())

    def redact(self, events: List[Event]) -> list:
        if _policy is None:
            self.init()
        return [_policy.redact(e) for e in events]

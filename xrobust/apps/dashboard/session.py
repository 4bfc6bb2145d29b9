"""Results kept in the session, tied to what they were computed from.

A page that keeps a result across reruns (the overview's full audit and its downloads, the
adversarial page's chosen flip) stores it with :func:`remember` under a fingerprint of the
model, the data and the settings that produced it; :func:`recall` returns it only while the
fingerprint still matches, and drops it otherwise. Switching the sidebar from the demo
model to an ONNX file or an endpoint therefore never shows the demo's verdict or offers its
report under the new model's name.

Example:
    >>> fp = fingerprint("demo:digits:abc", "builtin:digits:28", {"n": 64})
    >>> fp == fingerprint("demo:digits:abc", "builtin:digits:28", {"n": 64})
    True
    >>> fp == fingerprint("onnx:123", "builtin:digits:28", {"n": 64})
    False
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import streamlit as st

__all__ = ["fingerprint", "forget", "recall", "remember"]


def fingerprint(*parts: Any) -> str:
    """A stable digest of ``parts`` (model key, data key, settings: JSON-able values; other
    objects count by their ``repr``)."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def remember(name: str, fp: str, value: Any) -> None:
    """Keep ``value`` under ``name`` for the fingerprint ``fp``."""
    st.session_state[name] = (fp, value)


def recall(name: str, fp: str) -> Any:
    """The value kept under ``name`` if it was computed for ``fp``; otherwise the stale value
    (from another model, data or settings) is dropped and None returned."""
    entry = st.session_state.get(name)
    if entry is None:
        return None
    if not (isinstance(entry, tuple) and len(entry) == 2 and entry[0] == fp):
        st.session_state.pop(name, None)
        return None
    return entry[1]


def forget(name: str) -> None:
    """Drop whatever is kept under ``name``."""
    st.session_state.pop(name, None)

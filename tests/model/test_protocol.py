"""The agent protocol (experiments/kernel/protocol.py): every command and event survives the
trip through JSON, and a line that is not a message is one clear `ProtocolError`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import types
import typing
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.kernel import protocol
from experiments.kernel.protocol import (
    COMMANDS,
    EVENTS,
    Done,
    Error,
    Ok,
    PacketIn,
    ProtocolError,
    TcpConnect,
    UdpOpen,
    UdpSend,
    command_from_json,
    event_from_json,
    message_id,
    to_json,
)

MESSAGES = [*COMMANDS.values(), *EVENTS.values()]


def _strategy(hint: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[st.none() if a is type(None) else _strategy(a)
                           for a in typing.get_args(hint)])
    if origin is Literal:
        return st.sampled_from(typing.get_args(hint))
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(hint)[0]), max_size=4).map(tuple)
    return {
        int: st.integers(-(2**40), 2**40),
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: st.text(max_size=20),
        bytes: st.binary(max_size=64),
        bool: st.booleans(),
    }[hint]


def _messages(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: _strategy(hints[f.name])
                             for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    message = data.draw(_messages(cls))
    line = to_json(message)
    assert "\n" not in line
    read = command_from_json(line) if cls in COMMANDS.values() else event_from_json(line)
    assert read == message and type(read) is cls


def test_the_wire_form_is_named_and_hex() -> None:
    line = to_json(UdpSend(sport=1, dst="10.0.0.1", dport=2, payload=b"\x00hi", id=7))
    assert json.loads(line) == {"op": "udp_send", "sport": 1, "dst": "10.0.0.1", "dport": 2,
                                "payload": "006869", "count": 1, "interval": 0.0, "id": 7}
    assert json.loads(to_json(PacketIn(1.5, b"\x45"))) == {"event": "packet", "time": 1.5,
                                                           "data": "45"}


def test_defaults_and_integral_floats() -> None:
    assert command_from_json('{"op":"tcp_connect","sport":1,"dst":"h","dport":2}') == \
        TcpConnect(1, "h", 2)
    assert event_from_json('{"event":"ok","id":3,"times":[1, 2.5]}') == Ok(3, (1.0, 2.5))
    assert command_from_json(b'{"op":"udp_open","port":9,"reply":null,"id":4}') == \
        UdpOpen(9, None, 4)


@pytest.mark.parametrize(("line", "says"), [
    ("{not json", "bad JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"id": 1}', "missing 'op'"),
    ('{"op": "no_such_op", "id": 1}', "unknown op 'no_such_op'"),
    ('{"op": "udp_open", "id": 1}', "udp_open: missing field 'port'"),
    ('{"op": "udp_open", "port": 1, "colour": "red"}', "udp_open: unknown field 'colour'"),
    ('{"op": "udp_open", "port": "80"}', "udp_open.port: expected int"),
    ('{"op": "udp_open", "port": true}', "udp_open.port: expected int"),
    ('{"op": "udp_open", "port": 1, "reply": "zz"}', "udp_open.reply: not hex"),
    ('{"op": "udp_open", "port": 1, "reply": 5}', "udp_open.reply: expected hex"),
    ('{"op": "tcp_connect", "sport": 1, "dst": "h", "dport": 2, "close": "slam"}',
     "tcp_connect.close: expected one of"),
    ('{"op": "udp_send", "sport": 1, "dst": "h", "dport": 2, "interval": "soon"}',
     "udp_send.interval: expected a number"),
])
def test_a_malformed_command_is_one_clear_error(line: str, says: str) -> None:
    with pytest.raises(ProtocolError) as info:
        command_from_json(line)
    assert says in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("line", "says"), [
    ('{"event": "teleport"}', "unknown event 'teleport'"),
    ('{"op": "quit"}', "missing 'event'"),
    ('{"event": "ok", "id": 1, "times": 5}', "ok.times: expected an array"),
    ('{"event": "done", "id": 1, "conn": 1, "connected": 1, "error": null, "received": 0,'
     ' "closed": null}', "done.connected: expected bool"),
])
def test_a_malformed_event_is_one_clear_error(line: str, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        event_from_json(line)


def test_a_command_is_not_an_event() -> None:
    with pytest.raises(ProtocolError):
        event_from_json(to_json(UdpOpen(1)))
    with pytest.raises(ProtocolError):
        command_from_json(to_json(Error(1, "udp_open", None, "no")))


def test_message_id_reads_what_it_can() -> None:
    assert message_id('{"op": "nope", "id": 5}') == (5, "nope")
    assert message_id('{"op": 3, "id": "5"}') == (None, None)
    assert message_id("garbage") == (None, None)
    assert message_id("[]") == (None, None)


def test_messages_are_frozen_and_named_once() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Done(1, 1, True, None, 0, "fin").id = 2  # type: ignore[misc]
    assert len(COMMANDS) == 7 and len(EVENTS) == 9


def test_the_protocol_and_the_agent_load_only_the_standard_library() -> None:
    code = ("import sys, experiments.kernel.agent\n"
            "ours = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('nat', 'topologies', 'pydantic', 'scapy', 'rich', 'pyroute2', 'dpkt', 'mininet')"
            " or m.startswith('experiments.') and m not in ("
            "'experiments.kernel', 'experiments.kernel.agent', 'experiments.kernel.protocol'))\n"
            "print(ours)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert protocol.__file__

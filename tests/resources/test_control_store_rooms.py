"""The control store is kept in small rooms, each behind its own port of the domain core, and the core
never takes an untyped store (docs/architecture.md, "The control store in rooms")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from batch import ports
from resources.control_store import ControlStore
from resources.control_store.alert_room import AlertRoom
from resources.control_store.audit_room import AuditRoom
from resources.control_store.key_room import KeyRoom
from resources.control_store.lock_room import LockRoom
from resources.control_store.param_room import ParamRoom
from resources.control_store.plumbing import StoreBase
from resources.control_store.request_room import RequestRoom
from resources.control_store.version_room import VersionRoom

ROOT = Path(__file__).resolve().parents[2]
MAX_ROOM_LINES = 400
ROOM_OF_PORT = {ports.UnitPort: StoreBase, ports.MonthPort: StoreBase, ports.KeyPort: KeyRoom, ports.AlertPort: AlertRoom,
                ports.VersionPort: VersionRoom, ports.LockPort: LockRoom, ports.ParamPort: ParamRoom,
                ports.RequestPort: RequestRoom, ports.AuditPort: AuditRoom}


def port_members(port: type) -> set[str]:
    return {name for name in vars(port) if not name.startswith("_")}


@pytest.mark.parametrize("module", sorted((ROOT / "resources" / "control_store").glob("*.py")), ids=lambda p: p.name)
def test_every_module_of_the_control_store_holds_at_most_400_lines(module: Path):
    lines = len(module.read_text().splitlines())
    assert lines <= MAX_ROOM_LINES, f"{module.name} holds {lines} lines"


@pytest.mark.parametrize("port", list(ROOM_OF_PORT), ids=lambda p: p.__name__)
def test_each_port_is_served_by_its_own_room(port: type):
    room = ROOM_OF_PORT[port]
    members = port_members(port)
    assert members, port
    assert {name for name in members if name not in vars(room)} == set()
    assert all(getattr(ControlStore, name) is vars(room)[name] for name in members)


def test_the_control_port_is_every_rooms_port():
    assert set(ROOM_OF_PORT) <= set(ports.ControlPort.__mro__)
    assert port_members(ports.ControlPort) == set()  # it adds nothing of its own


def test_no_function_of_the_domain_core_takes_an_untyped_store():
    untyped = []
    for path in sorted((ROOT / "batch").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if "store" in arg.arg and (arg.annotation is None or ast.unparse(arg.annotation) in ("Any", "object")):
                    untyped.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({arg.arg})")
    assert untyped == []

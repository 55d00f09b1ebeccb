"""The import rules of docs/ARCHITECTURE.md, read from the source (AST, nothing imported).

- the floor (``services/common``) imports no service and no tool;
- a service imports no other service and no tool (what two share is a contract on the floor;
  what one needs from another comes over a public topic);
- the pure domain modules reach no Kafka, Redis, gRPC or RocksDB client, not even through the
  sandan modules they import.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("order_match", "tax_guarantee", "returns", "gateway", "paydata", "paydata_platform")
TOOLS = ("demo", "cli", "tools")
IO_LIBRARIES = ("aiokafka", "kafka", "redis", "grpc", "grpc_health", "grpc_reflection", "rocksdict")
PURE = (
    "services.common.money", "services.common.timefields", "services.common.customs_numbers",
    "services.common.codes", "services.common.verdict", "services.common.receipts", "services.common.rates",
    "services.common.tax", "services.common.tax_lines", "services.common.quota.rebuild",
    "services.common.ceb.reader", "services.common.ceb.receipt_xml",
    "services.order_match.rules", "services.order_match.matcher", "services.order_match.decide",
    "services.order_match.processor",
    "services.tax_guarantee.rules", "services.tax_guarantee.ledger", "services.tax_guarantee.account",
    "services.tax_guarantee.tax_bill",
    "services.returns.policy", "services.returns.engine", "services.returns.inputs", "services.returns.bucket",
    "services.common.signing.crypto", "services.common.signing.paydata", "services.common.signing.xmldsig",
    "services.common.signing.dxp", "services.gateway.receipt_envelopes",
    "services.paydata.protocol", "services.paydata.compare", "services.paydata.sampler", "services.paydata.sessions",
    "services.paydata.outcomes", "services.paydata.signature", "services.paydata.engine",
    "services.paydata_platform.responder",
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted((root / "services").rglob("*.py"))}


def _top(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "services" and len(parts) > 1 else None


def crossings(modules: dict[str, set[str]]) -> list[str]:
    """Every import that crosses a line of the architecture, as 'importer -> imported'."""
    found = []
    for name, imported in modules.items():
        home = _top(name)
        # ``from services.x import y`` names both services.x and services.x.y: one line per module
        for target in sorted({".".join(t.split(".")[:3]) for t in imported}):
            other = _top(target)
            if other is None or other == home:
                continue
            if home == "common" and other in SERVICES + TOOLS:
                found.append(f"{name} -> {target} (the floor imports a {'service' if other in SERVICES else 'tool'})")
            elif home in SERVICES and other in SERVICES + TOOLS:
                found.append(f"{name} -> {target} (a service imports {'another service' if other in SERVICES else 'a tool'})")
    return found


def impure_reach(modules: dict[str, set[str]], pure: tuple[str, ...]) -> list[str]:
    """Pure modules that reach an I/O library, directly or through sandan modules."""
    found = []
    for start in pure:
        seen, stack = {start}, [start]
        while stack:
            current = stack.pop()
            for target in modules.get(current, ()):
                if target.split(".")[0] in IO_LIBRARIES:
                    found.append(f"{start} reaches {target} (via {current})")
                elif target in modules and target not in seen:
                    seen.add(target)
                    stack.append(target)
    return found




def test_the_floor_and_the_services_cross_no_line():
    assert crossings(graph()) == []


def test_the_pure_domain_reaches_no_kafka_redis_grpc_or_rocksdb():
    modules = graph()
    missing = [name for name in PURE if name not in modules]
    assert missing == [], f"pure modules named here but not in services/: {missing}"
    assert impure_reach(modules, PURE) == []


@pytest.mark.parametrize(("path", "source", "expected"), [
    ("services/common/generator.py", "from services.order_match import codes\n", "the floor imports a service"),
    ("services/tax_guarantee/processor.py", "from services.order_match.quota import QuotaStore\n",
     "a service imports another service"),
    ("services/returns/codes.py", "from ..order_match.codes import RETURN_LATE\n", "a service imports another service"),
    ("services/gateway/server.py", "import services.demo.runner\n", "a service imports a tool"),
])
def test_the_check_sees_each_kind_of_crossing(tmp_path, path, source, expected):
    file = tmp_path / path
    file.parent.mkdir(parents=True)
    file.write_text(source)
    found = crossings(graph(tmp_path))
    assert found and all(expected in line for line in found), found


def test_the_check_sees_io_reached_through_another_module(tmp_path):
    (tmp_path / "services/order_match").mkdir(parents=True)
    (tmp_path / "services/order_match/rules.py").write_text("from services.order_match import helpers\n")
    (tmp_path / "services/order_match/helpers.py").write_text("import redis.asyncio\n")
    assert impure_reach(graph(tmp_path), ("services.order_match.rules",)) == [
        "services.order_match.rules reaches redis.asyncio (via services.order_match.helpers)"]

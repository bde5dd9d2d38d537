"""The pins of setup.py (what Dataflow and Flink workers install) and of requirements*.txt (what
`make install` installs) are the same, exact, and the workers get nothing the pipeline does not import."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_lists() -> dict[str, list[str]]:
    """The module-level lists of requirement strings in setup.py, by name, with `A + [...]` resolved."""
    lists: dict[str, list[str]] = {}

    def value(node) -> list[str]:
        if isinstance(node, ast.List):
            return [element.value for element in node.elts]
        if isinstance(node, ast.Name):
            return lists[node.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        raise AssertionError(f"setup.py: cannot read {ast.dump(node)}")

    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper():
            lists[node.targets[0].id] = value(node.value)
    return lists


def requirements(name: str) -> set[str]:
    lines = (ROOT / name).read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))}


def test_every_requirement_is_pinned_exactly():
    for name in ("requirements.txt", "requirements-test.txt"):
        for requirement in requirements(name):
            assert "==" in requirement, f"{name}: {requirement} is not pinned exactly"
    for name, pins in setup_lists().items():
        for requirement in pins:
            assert "==" in requirement, f"setup.py {name}: {requirement} is not pinned exactly"


def test_setup_py_and_the_requirements_files_pin_the_same_versions():
    lists = setup_lists()
    in_setup = {r for pins in lists.values() for r in pins}
    in_files = requirements("requirements.txt") | requirements("requirements-test.txt")
    assert in_setup == in_files


def test_workers_install_the_pipeline_only():
    pipeline = {r.split("[")[0].split("==")[0] for r in setup_lists()["PIPELINE"]}
    assert pipeline.isdisjoint({"fastapi", "uvicorn", "prometheus-client", "pytest", "hypothesis"})
    assert {"apache-beam", "pymongo", "fastavro", "google-cloud-pubsub"} <= pipeline

#!/usr/bin/env python3
"""Fails when the proxy's top-level modules import each other in a cycle.

ARCHITECTURE.md promises layers (sessions do not reach into the shard that runs them, and so
on); this keeps that true. Test code (a `#[cfg(test)] mod tests` to the end of its file, and
the test-only modules `testutil.rs` and `tests.rs`) may reach anywhere and is not counted.
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "proxy/src"
ROOTS = {"lib.rs", "main.rs"}


def production_text(path):
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests\b", text)
    return text[: cut.start()] if cut else text


edges = {}
for dirpath, _, files in os.walk(SRC):
    for name in files:
        if not name.endswith(".rs") or name in ("testutil.rs", "tests.rs"):
            continue
        rel = os.path.relpath(os.path.join(dirpath, name), SRC)
        if rel in ROOTS or "/tests/" in "/" + rel:
            continue
        module = rel.split(os.sep)[0].removesuffix(".rs")
        for target in re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", production_text(os.path.join(dirpath, name))):
            if target != module:
                edges.setdefault(module, set()).add(target)

state = {}
stack = []


def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
        if state.get(nxt) == "open":
            cycle = stack[stack.index(nxt):] + [nxt]
            print("module import cycle in %s: %s" % (SRC, " -> ".join(cycle)))
            sys.exit(1)
        if nxt not in state:
            visit(nxt)
    stack.pop()
    state[node] = "done"


for node in sorted(edges):
    if node not in state:
        visit(node)
print("no module import cycle in %s (%d modules)" % (SRC, len(set(edges) | {t for ts in edges.values() for t in ts})))

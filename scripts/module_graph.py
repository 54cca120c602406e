#!/usr/bin/env python3
"""The library's module graph: which top-level module of src/ names which other (`crate::X` anywhere in its
code, test modules and comments left out), and every cycle in it.

    python3 scripts/module_graph.py            # print edges and cycles; exit 1 if there is a cycle
    python3 scripts/module_graph.py --dot      # Graphviz

`error` (the crate-level error) wraps every module's own error type, so an edge *into* it would close a cycle
through every module; none exists, and `tests/it/module_graph.rs` (run by `cargo test`) keeps it so. The
binary's `src/cli` is not part of the library and is left out. Standard library only.
"""

import os
import re
import sys
from collections import defaultdict

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
PATH = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)
# `Error` and `Result` at the crate root are error.rs's.
ROOT_ERROR = {"Error", "Result"}


def top_level_modules():
    mods = {}
    for name in sorted(os.listdir(SRC)):
        path = os.path.join(SRC, name)
        if name in ("lib.rs", "main.rs") or name == "cli":
            continue
        if name.endswith(".rs"):
            mods[name[:-3]] = [path]
        elif os.path.isdir(path):
            mods[name] = [os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(".rs")]
    return mods


def code_of(path):
    text = open(path, encoding="utf-8").read()
    # Unit tests sit at the bottom of a file after `#[cfg(test)]`; a file under a `tests` name is all test.
    if os.path.basename(path) == "tests.rs":
        return ""
    text = text.split("#[cfg(test)]")[0]
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("//")]
    return "\n".join(lines)


def edges():
    mods = top_level_modules()
    graph = defaultdict(set)
    for mod, files in mods.items():
        for f in files:
            code = code_of(f)
            named = set(PATH.findall(code))
            for group in USE_GROUP.findall(code):
                named.update(re.findall(r"(?:^|[,{\s])([A-Za-z_][A-Za-z0-9_]*)", group))
            for target in named:
                target = "error" if target in ROOT_ERROR else target
                if target in mods and target != mod:
                    graph[mod].add(target)
        graph.setdefault(mod, set())
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    graph = edges()
    if "--dot" in sys.argv:
        print("digraph huescan {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for a in sorted(graph):
        print(f"{a:10} -> {', '.join(sorted(graph[a])) or '(nothing)'}")
    found = cycles(graph)
    without_error = {a: {b for b in bs if b != "error"} for a, bs in graph.items() if a != "error"}
    found_without_error = cycles(without_error)
    print()
    if found:
        for c in found:
            print("cycle:", " <-> ".join(c))
    else:
        print("no cycles")
    if found_without_error:
        for c in found_without_error:
            print("cycle not through error.rs:", " <-> ".join(c))
    else:
        print("no cycles once error.rs is left out")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

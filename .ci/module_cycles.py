#!/usr/bin/env python3
"""Fails when a module of a crate uses another that uses it back (directly or around a loop).

    python3 .ci/module_cycles.py            # every crate of the workspace
    python3 .ci/module_cycles.py -v         # and print every module's edges

Each crate root (`lib.rs`, and `main.rs` as a crate of its own) and the modules it declares
(`mod x;`, followed file by file) make one graph. A module is a file (`a/b.rs` or
`a/b/mod.rs` is `a::b`). Module A uses module B when A's non-test code names a path into B:
`crate::b::…`, `super::…`, `self::…`, a child module declared in A (`cpu::f(…)` after
`mod cpu;`), or a module A imported (`host::op::f()` after `use crate::host;`), in `use`
declarations (braces expanded, aliases dropped) or inline. A path resolves to the deepest module it
names; a name the root re-exports (`crate::Result` after `pub use error::Result`) resolves
to the module it comes from. Declaring a module (`mod b;`) is not a use; re-exporting from
it is. Comments, strings and `#[cfg(test)]` modules are left out (tests may reach anywhere).

Cycles are the strongly connected components of the graph with more than one module.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def strip(code: str) -> str:
    """The code without comments, string/char literals and test modules."""
    out, i, n = [], 0, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == '"' or re.match(r'r#*"', code[i : i + 8]) and not re.match(r"\w", code[i - 1 : i] or " "):
            if c == "r":
                hashes = code[i + 1 : code.index('"', i)]
                end = '"' + hashes
                j = code.find(end, code.index('"', i) + 1)
                i = n if j < 0 else j + len(end)
            else:
                j = i + 1
                while j < n and code[j] != '"':
                    j += 2 if code[j] == "\\" else 1
                i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", code[i : i + 4]):
            i = code.index("'", i + 2) + 1
        else:
            out.append(c)
            i += 1
    text = "".join(out)
    # `#[cfg(test)] mod x { … }` and `#[cfg(all(test, …))] mod x { … }`: drop the block.
    pattern = re.compile(
        r"#\[cfg\((all\([^\]]*\btest\b|test)[^\]]*\]\s*(#\[[^\]]*\]\s*)*"
        r"(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{"
    )
    while m := pattern.search(text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[: m.start()] + text[j:]
    return text


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e` (aliases and globs dropped)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(inner):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(inner[start:k])
            start = k + 1
    parts.append(inner[start:])
    paths = []
    for p in filter(None, parts):
        if p == "self":
            paths.append(prefix.rstrip(":"))
        else:
            paths.extend(prefix + q for q in expand_use(p))
    return paths


def crate_modules(root: Path) -> dict[tuple, Path]:
    """Module path (a tuple of names) -> file, for every file the crate root `root`
    declares, directly or through its modules (`mod x;`, outside test code)."""
    mods = {(): root}
    todo = [((), root)]
    while todo:
        module, f = todo.pop()
        here = f.parent if f.name in ("mod.rs", "lib.rs", "main.rs") else f.with_suffix("")
        for name in re.findall(r"\bmod\s+(\w+)\s*;", strip(f.read_text())):
            for child in (here / f"{name}.rs", here / name / "mod.rs"):
                if child.exists() and module + (name,) not in mods:
                    mods[module + (name,)] = child
                    todo.append((module + (name,), child))
                    break
    return mods


def graph(root: Path) -> dict[tuple, set]:
    mods = crate_modules(root)
    texts = {m: strip(f.read_text()) for m, f in mods.items()}
    # The root's re-exports: name -> source module.
    reexports = {}
    for tree in re.findall(r"pub(?:\([^)]*\))?\s+use\s+([^;]+);", texts.get((), "")):
        for path in expand_use(tree):
            parts = [p for p in path.split("::") if p and p != "crate"]
            if len(parts) >= 2:
                reexports[parts[-1]] = tuple(parts[:-1])

    def resolve(module: tuple, path: list[str]) -> tuple | None:
        if path[0] == "crate":
            base, rest = (), path[1:]
        elif path[0] == "self":
            base, rest = module, path[1:]
        elif path[0] == "super":
            base, rest = module, path
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        else:
            base, rest = module, path  # a child module's name
        target = base
        for name in rest:
            if target + (name,) in mods:
                target = target + (name,)
            else:
                if target == () and name in reexports and reexports[name] in mods:
                    target = reexports[name]
                break
        return target

    edges = {m: set() for m in mods}
    for m, text in texts.items():
        children = set(re.findall(r"\bmod\s+(\w+)\s*;", text))
        paths = []
        for tree in re.findall(r"\buse\s+([^;]+);", text):
            paths.extend(p.split("::") for p in expand_use(tree))
        uses = re.sub(r"\buse\s+[^;]+;", "", text)
        paths.extend(p.split("::") for p in re.findall(r"\b(?:crate|super|self)(?:::\w+)+", uses))
        for child in children:
            paths.extend(p.split("::") for p in re.findall(rf"(?<![\w:]){child}(?:::\w+)+", uses))
        for path in paths:
            path = [p for p in path if p]
            if not path or path[0] not in ("crate", "self", "super", *children):
                continue
            target = resolve(m, path)
            if target is not None and target != m:
                edges[m].add(target)
        # Modules brought into scope by `use` (`use crate::host;`), then named in paths
        # (`host::op::f()`): resolved from the module they name.
        imported = {}
        for path in paths:
            path = [p for p in path if p]
            if path and path[0] in ("crate", "self", "super"):
                target = resolve(m, path)
                if target and target[-1] == path[-1] and target in mods:
                    imported[path[-1]] = target
        for local, module in imported.items():
            if local in children:
                continue
            for tail in re.findall(rf"(?<![\w:]){local}((?:::\w+)+)", uses):
                target = resolve(module, ["self", *filter(None, tail.split("::"))])
                if target is not None and target != m:
                    edges[m].add(target)
    return edges


def cycles(edges: dict[tuple, set]) -> list[list[tuple]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def name(m: tuple) -> str:
    return "::".join(m) or "(root)"


def main() -> int:
    global ROOT
    verbose = "-v" in sys.argv
    args = [a for a in sys.argv[1:] if a != "-v"]
    if args:
        ROOT = Path(args[0]).resolve()
    bad = 0
    roots = []
    for manifest in sorted(ROOT.glob("**/Cargo.toml")):
        src = manifest.parent / "src"
        if "target" in manifest.parts or not src.is_dir():
            continue
        for file, kind in (("lib.rs", ""), ("main.rs", " (bin)")):
            if (src / file).exists():
                roots.append((manifest.parent.name + kind, src / file))
    for crate, root in roots:
        edges = graph(root)
        found = cycles(edges)
        n_edges = sum(map(len, edges.values()))
        print(f"{crate}: {len(edges)} modules, {n_edges} uses, {len(found)} cycles")
        if verbose:
            for m in sorted(edges):
                print(f"  {name(m)} -> {', '.join(sorted(map(name, edges[m]))) or '-'}")
        for comp in found:
            bad += 1
            print(f"  CYCLE: {' <-> '.join(map(name, comp))}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

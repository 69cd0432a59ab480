#!/usr/bin/env python3
"""Fails when a module of a crate uses another that uses it back (directly or around a loop).

    python3 .ci/module_cycles.py            # every crate of the workspace
    python3 .ci/module_cycles.py -v         # and print every module's edges

A module is a file (`src/a/b.rs` or `src/a/b/mod.rs` is `a::b`; `lib.rs`/`main.rs` the
root). Module A uses module B when A's non-test code names a path into B: `crate::b::…`,
`super::…`, `self::…`, or a child module declared in A (`cpu::f(…)` after `mod cpu;`),
in `use` declarations (braces expanded) or inline. A path resolves to the deepest module it
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
        elif c == '"' or code.startswith('r"', i) or code.startswith('r#"', i):
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
    pattern = re.compile(r"#\[cfg\((all\()?test[^\]]*\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while m := pattern.search(text):
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        text = text[: m.start()] + text[j:]
    return text


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e` (aliases and globs dropped)."""
    tree = re.sub(r"\s+", "", tree)
    i = tree.find("{")
    if i < 0:
        return [re.sub(r"as\w+$", "", tree.split(" as ")[0])]
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


def crate_modules(src: Path) -> dict[tuple, Path]:
    """Module path (a tuple of names) -> file, for every file reachable from the roots."""
    mods = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("").parts
        if rel[-1] == "mod":
            rel = rel[:-1]
        if len(rel) == 1 and rel[0] == "main" and (src / "lib.rs").exists():
            continue  # the binary: a crate of its own over the library
        if len(rel) == 1 and rel[0] in ("lib", "main"):
            rel = ()
        elif rel and rel[0] == "bin":
            continue
        mods.setdefault(tuple(rel), f)
    return mods


def graph(src: Path) -> dict[tuple, set]:
    mods = crate_modules(src)
    texts = {m: strip(f.read_text()) for m, f in mods.items()}
    # The root's re-exports: name -> source module.
    reexports = {}
    for tree in re.findall(r"pub\s+use\s+([^;]+);", texts.get((), "")):
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
    srcs = sorted(p.parent for p in ROOT.glob("**/Cargo.toml") if (p.parent / "src").is_dir())
    srcs = [s / "src" for s in srcs if "target" not in s.parts]
    for src in srcs:
        edges = graph(src)
        found = cycles(edges)
        crate = src.parent.name if src.name == "src" else src.name
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

#!/usr/bin/env python3
"""Import cycles between the modules of one crate.

    scripts/module-cycles.py http/src            # prints the edges' cycles, exit 1 if any
    scripts/module-cycles.py http/src --edges    # ... and every edge

A module is a file (`x.rs`, `x/mod.rs`, `x/y.rs`); an edge M -> T means
that M names an item of T: in a `use crate::...` / `use super::...`
statement (brace groups expanded), in a path `crate::a::b::f` in code, or
in a path `child::f` that names a child module.
A path is resolved to the deepest module it names, so `super::rules::Rules`
is an edge to `rules`, `super::Rules` one to the parent. Names the crate
root re-exports (`pub use a::B` in lib.rs) resolve to the module they come
from. Test code is left out: `#[cfg(test)]` modules inline (brace-matched)
and `#[cfg(test)] mod x;` files. Module declarations (`mod x;`) are not
edges; re-exports (`pub use x::Y`) are.
"""

import os
import re
import sys


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def strip_test_modules(text):
    """Removes `#[cfg(test)] mod name { ... }` blocks; returns the text and
    the names of `#[cfg(test)] mod name;` declarations."""
    test_files = set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text))
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    return "".join(out), test_files


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = tree.strip()
    if not tree:
        return []
    m = re.match(r"^(.*?)\{(.*)\}$", tree, flags=re.S)
    if not m:
        return [re.sub(r"\s+as\s+\w+$", "", tree)]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return [prefix + p for part in parts for p in expand(part) if part.strip()]


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    root = args[0] if args else "src"
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.join(dirpath, n)
                files[module_of(root, p)] = p
    texts, excluded = {}, set()
    for mod, p in files.items():
        text, test_files = strip_test_modules(strip_comments(open(p).read()))
        texts[mod] = text
        excluded |= {mod + (t,) for t in test_files}
    modules = {m for m in files if not any(m[: len(e)] == e for e in excluded)}

    # Names the crate root re-exports, and where from.
    reexports = {}
    for stmt in re.findall(r"pub\s+use\s+([^;]+);", texts.get((), "")):
        for path in expand(stmt):
            segs = [s.strip() for s in path.split("::")]
            reexports[segs[-1]] = tuple(segs[:-1])

    def resolve(mod, segs):
        if segs[0] == "crate":
            base, rest = (), segs[1:]
        elif segs[0] == "super":
            base, rest = mod, segs
            while rest and rest[0] == "super":
                base, rest = base[:-1], rest[1:]
        elif segs[0] == "self":
            base, rest = mod, segs[1:]
        else:
            return None
        target = base
        for s in rest:
            if target + (s,) in files:
                target = target + (s,)
            else:
                if target == () and s in reexports:
                    target = reexports[s]
                break
        return target

    edges = {m: set() for m in modules}
    for mod in modules:
        text = texts[mod]
        paths = []
        for stmt in re.findall(r"\buse\s+((?:crate|super|self)\b[^;]*);", text):
            paths += expand(stmt)
        code = re.sub(r"\buse\s+[^;]*;", "", text)
        paths += re.findall(r"\b(?:crate|super)(?:::\w+)+", code)
        # Paths relative to the module: `child::Item` names a child module.
        for child in (m for m in files if m[:-1] == mod and len(m) == len(mod) + 1):
            if re.search(r"(?<![:\w])" + child[-1] + r"::", text):
                paths.append("self::" + child[-1])
        for path in paths:
            segs = [s.strip() for s in path.split("::") if s.strip()]
            target = resolve(mod, segs)
            if target is not None and target != mod and target in modules:
                edges[mod].add(target)

    name = lambda m: "::".join(m) or "crate"
    if show_edges:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f"{name(m)} -> {name(t)}")

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            visit(v)
    edge_count = sum(len(e) for e in edges.values())
    print(f"{root}: {len(modules)} modules, {edge_count} edges, {len(sccs)} cycle(s)")
    for scc in sccs:
        members = set(scc)
        print("  cycle among: " + ", ".join(name(m) for m in scc))
        for m in scc:
            for t in sorted(edges[m] & members):
                print(f"    {name(m)} -> {name(t)}")
    return 1 if sccs else 0


if __name__ == "__main__":
    sys.exit(main())

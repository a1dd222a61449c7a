#!/usr/bin/env python3
"""Import cycles between the modules of one crate, at file granularity.

    scripts/module-cycles.py projections/src            # exit 1 if there is a cycle
    scripts/module-cycles.py projections/src --edges    # also print every edge

Each .rs file is a node (its inline modules, `mod tests { .. }` included,
belong to it). An edge A -> B is a path in A that names B: `use crate::..`,
`use super::..`, `use self::..` (braces expanded) and `crate::..` /
`super::..` paths written in code. A path is resolved to the longest file
module it names; a name lib.rs re-exports (`crate::Projection`) resolves
to the module it comes from. Declaring a child (`mod x;`) is not an edge.
Comments and string literals are ignored. A method of an `impl` block in
another file is invisible to it: keep impl blocks of one type in files
that depend one way.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(src):
    """Source without comments and string/char literals (kept as spaces)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", src[i - 1])):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", src[i : j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:]):
            m = re.match(r"'(\\.|[^\\'])'", src[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    depth = 0
    for k, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                prefix, inner = tree[:k], tree[k + 1 : tree.rfind("}")]
                parts, start, d = [], 0, 0
                for m, c in enumerate(inner):
                    if c in "{":
                        d += 1
                    elif c == "}":
                        d -= 1
                    elif c == "," and d == 0:
                        parts.append(inner[start:m])
                        start = m + 1
                parts.append(inner[start:])
                result = []
                for p in parts:
                    if p.strip():
                        for e in expand(p):
                            result.append((prefix + e) if prefix else e)
                return result
            depth += 1
    return [re.sub(r"\s+as\s+" + IDENT + "$", "", tree)]


def module_of(path, src_dir):
    rel = path.relative_to(src_dir).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("lib", "main", "mod"):
        parts = parts[:-1]
    return tuple(parts)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_edges = "--edges" in sys.argv
    src_dir = Path(args[0] if args else "src")
    files = sorted(src_dir.rglob("*.rs"))
    modules = {module_of(f, src_dir): f for f in files}
    texts = {m: strip(f.read_text()) for m, f in modules.items()}

    # Names lib.rs re-exports: crate::Name -> the module it comes from.
    reexports = {}
    root = texts.get((), "")
    for m in re.finditer(r"pub\s+use\s+([^;]+);", root):
        for p in expand(m.group(1)):
            segs = [s.strip() for s in p.split("::")]
            if segs[0] in ("crate", "self"):
                segs = segs[1:]
            reexports[segs[-1]] = tuple(segs[:-1])

    def resolve(segs, here, inline_depth):
        if segs[0] == "crate":
            target = []
            rest = segs[1:]
        else:
            base = list(here)
            rest = list(segs)
            # `super` inside an inline module first leaves that module.
            skip = inline_depth
            while rest and rest[0] in ("super", "self"):
                if rest[0] == "super":
                    if skip:
                        skip -= 1
                    elif base:
                        base.pop()
                rest = rest[1:]
            target = base
        target = list(target)
        for s in rest:
            if tuple(target + [s]) in modules:
                target.append(s)
            else:
                if not target and s in reexports:
                    return reexports[s]
                break
        return tuple(target)

    edges = {m: set() for m in modules}
    for mod, text in texts.items():
        # Depth of inline `mod x {` blocks at each offset.
        inline_starts = [m.end() for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", text)]
        depth_at = []
        stack, d, starts = [], 0, set(inline_starts)
        inline = 0
        for k, ch in enumerate(text):
            if k in starts:
                # Just after the block's `{`: it closes when the depth falls back below it.
                stack.append(d - 1)
                inline += 1
            if ch == "{":
                d += 1
            elif ch == "}":
                d -= 1
                if stack and stack[-1] == d:
                    stack.pop()
                    inline -= 1
            depth_at.append(inline)
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            for p in expand(m.group(1)):
                paths.append((p, m.start()))
        for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:crate|super|self)(?:::" + IDENT + ")+)", text):
            paths.append((m.group(1), m.start()))
        for p, at in paths:
            segs = [s.strip() for s in p.split("::") if s.strip()]
            if not segs or segs[0] not in ("crate", "super", "self"):
                continue
            if segs[-1] == "*":
                segs = segs[:-1]
            target = resolve(segs, mod, depth_at[at] if at < len(depth_at) else 0)
            if target != mod and target in modules:
                edges[mod].add(target)

    # Tarjan's strongly connected components.
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]

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
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            visit(v)

    name = lambda m: "::".join(m) or "lib"
    if show_edges:
        for m in sorted(edges):
            for t in sorted(edges[m]):
                print(f"{name(m)} -> {name(t)}")
    cycles = [sorted(c) for c in sccs if len(c) > 1]
    print(f"{len(modules)} modules, {sum(len(e) for e in edges.values())} edges, {len(cycles)} cycle(s)")
    for c in cycles:
        members = set(c)
        print("cycle: " + ", ".join(name(m) for m in c))
        for m in c:
            for t in sorted(edges[m] & members):
                print(f"    {name(m)} -> {name(t)}")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Reads a `cargo test` log of the Windows suite under Wine and prints, one
per line, `TARGET<TAB>TEST` for each failed test, where TARGET is `--lib`
or `--test=NAME`. Exits 0 only when every failure is Wine's spawn error 1359
(ERROR_INTERNAL_ERROR), 1 when any failure is something else, 2 when the
log names no failed test at all (a build error, a crash of a whole binary).

Why 1359 only: Wine 8's NtCreateUserProcess returns STATUS_INTERNAL_ERROR
when the new Wine process dies in Wine's own start-up, before it reports
`init_process_done` to the wineserver (seen under load, in tests that start
many processes at once). On Windows a suspended CreateProcessW runs no code
in the child before it returns; this failure has no Windows counterpart.
test-windows.sh runs such tests once more; every other failure stands.
"""
import re
import sys

log = open(sys.argv[1], encoding="utf-8", errors="replace").read()
# `Running unittests src/lib.rs (...)` / `Running tests/test_x.rs (...)` /
# `Running tests/test_x/main.rs (...)` (a test binary split into modules).
sections = re.split(r"^\s+Running ", log, flags=re.M)[1:]
failed = []
for sec in sections:
    head = sec.split("\n", 1)[0]
    m = re.match(r"tests/([A-Za-z0-9_]+)(?:/main)?\.rs", head)
    if m:
        target = "--test=" + m.group(1)
    elif head.startswith("unittests src/lib.rs"):
        target = "--lib"
    else:
        target = None
    # The summary list: "failures:" then indented names, after the blocks.
    lists = re.findall(r"^failures:\n((?:    \S+\n)+)", sec, flags=re.M)
    if not lists:
        continue
    # A test's block runs from its "---- NAME stdout ----" to the next
    # test's or to the summary list; it may hold a whole nested `cargo
    # test` report (a scenario run in a process of its own, whose stderr
    # says why its spawn failed), "failures:" lines included.
    summary = list(re.finditer(r"^failures:\n((?:    \S+\n)+)", sec, flags=re.M))[-1]
    heads = list(re.finditer(r"^---- (\S+) stdout ----\n", sec[: summary.start()], flags=re.M))
    blocks = {}
    for i, h in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else summary.start()
        blocks[h.group(1)] = sec[h.end() : end]
    for name in lists[-1].split():
        block = blocks.get(name)
        wine_spawn = block is not None and re.search(r"code: 1359\b|os error 1359\b", block)
        failed.append((target, name, bool(wine_spawn)))
if not failed:
    sys.exit(2)
for target, name, _ in failed:
    print(f"{target}\t{name}")
sys.exit(0 if all(t is not None and w for t, _, w in failed) else 1)

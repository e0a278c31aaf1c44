#!/usr/bin/env python3
"""Fails when an option of the duplex CLI is missing from docs/cli.md.

Usage: check_cli_docs.py DUPLEX_BINARY docs/cli.md

Reads the sub-commands from `duplex --help` and each one's options from
`duplex SUB --help` (CLI11's format), then looks for every option, long and
short, in code spans or code blocks of that sub-command's section of the doc
(the text from the heading "## `duplex SUB`" to the next "## " heading). The
top-level options (`duplex --help`) must appear before the first section.
Prints every missing option and exits 1 if there is any.
"""
import re
import subprocess
import sys

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def help_text(duplex, *args):
    out = subprocess.run([duplex, *args, "--help"], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        sys.exit(f"`duplex {' '.join(args)} --help` exited {out.returncode}: {out.stderr}")
    return out.stdout


def block(text, title):
    """Lines of the CLI11 help block `title:` (indented lines up to a blank one)."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.strip() == title + ":":
            inside = True
        elif inside and not line.strip():
            break
        elif inside:
            lines.append(line)
    return lines


def options(text):
    """Every option named at the start of a line of the Options block, but --help."""
    found = []
    for line in block(text, "Options"):
        m = re.match(r"\s+((?:-{1,2}[\w-]+,)*-{1,2}[\w-]+)", line)
        if m:
            found += [o for o in m.group(1).split(",") if o not in ("-h", "--help")]
    return found


def subcommands(text):
    return [line.split()[0] for line in block(text, "Subcommands") if re.match(r"  \S", line)]


def documented(section):
    """Options written in code spans and fenced code blocks of a doc section."""
    code = re.findall(r"```.*?```", section, re.S)
    section = re.sub(r"```.*?```", "", section, flags=re.S)
    code += re.findall(r"`([^`\n]+)`", section)
    return {o for c in code for o in OPTION.findall(c)}


def main():
    duplex, doc_path = sys.argv[1], sys.argv[2]
    with open(doc_path, encoding="utf-8") as f:
        doc = f.read()
    parts = re.split(r"^## ", doc, flags=re.M)
    sections = {}
    for part in parts[1:]:
        m = re.match(r"`duplex ([\w-]+)`", part)
        if m:
            sections[m.group(1)] = part
    missing = []
    top = help_text(duplex)
    for o in options(top):
        if o not in documented(parts[0]):
            missing.append(f"duplex {o}: not in the introduction of {doc_path}")
    subs = subcommands(top)
    if not subs:
        sys.exit("no sub-commands found in `duplex --help`")
    checked = 0
    for sub in subs:
        if sub not in sections:
            missing.append(f"duplex {sub}: no section \"## `duplex {sub}`\" in {doc_path}")
            continue
        have = documented(sections[sub])
        for o in options(help_text(duplex, sub)):
            checked += 1
            if o not in have:
                missing.append(f"duplex {sub} {o}: not in its section of {doc_path}")
    for m in missing:
        print(m)
    print(f"{len(subs)} sub-commands, {checked} options checked, {len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())

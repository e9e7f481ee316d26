"""Processes as Linux's /proc shows them: parents, descendants, memory and open files.

What the soak, hostile-image and fault tests watch: a server's process tree
(the server, its inference units), each process's RSS and open file
descriptors, and the inference unit processes of a data folder, orphans included.
"""
from __future__ import annotations

import os
from pathlib import Path

UNIT_MODULE = b"services.hosting.unit_server"


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, argv) for every process still there while reading."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state_and_more = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if state_and_more[0] == "Z":  # dead, not yet reaped: gone
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            found[int(entry.name)] = (int(state_and_more[1]), argv)
        except (OSError, ValueError, IndexError):
            continue
    return found


def process_tree(root: int) -> dict[int, str]:
    """``root`` and its descendants: pid -> a label (``server`` for the root, an inference unit's
    ``--name``, else the command's name)."""
    processes = _processes()
    tree, frontier = {root: "server"}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, argv) in processes.items():
            if ppid == parent and pid not in tree:
                tree[pid] = argv[argv.index("--name") + 1] if "--name" in argv else Path(argv[0]).name
                frontier.append(pid)
    return tree


def unit_processes(data_dir: Path) -> dict[int, int]:
    """The inference unit processes serving models of the server whose data folder is ``data_dir``
    (their ``--model`` lies in it), whoever their parent is now: pid -> parent pid."""
    root = str(Path(data_dir).resolve()) + os.sep
    return {pid: ppid for pid, (ppid, argv) in _processes().items()
            if UNIT_MODULE.decode() in argv and "--model" in argv
            and argv[argv.index("--model") + 1].startswith(root)}


def rss_mb(pid: int) -> float | None:
    """Resident memory in MB; None once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def open_fds(pid: int) -> int | None:
    """Open file descriptors; None once the process is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None

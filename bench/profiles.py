"""py-spy's folded stacks (`--format raw`): a summary of where the time goes, and a flame graph SVG.

py-spy writes one format per recording; raw keeps the numbers, and the SVG is drawn from them here
(Debian ships no flamegraph tool), so one recording gives both.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_PATH_PREFIXES = (re.compile(r"^.*/site-packages/"), re.compile(r"^.*/backend/"), re.compile(r"^.*/lib/python3\.\d+/"))


def short_frame(frame: str) -> str:
    """`function (file)` with the file relative to site-packages or the backend, line number dropped."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for prefix in _PATH_PREFIXES:
        path = prefix.sub("", path)
    return f"{match['function']} ({path})"


# Leaves of threads that wait, not work: the idle workers of anyio's thread pool sit in
# Condition.wait, and py-spy does not always see that they sleep. They are left out of the shares.
IDLE_LEAVES = frozenset(
    {
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
        "SimpleQueue.get (queue.py)",
        "Queue.get (queue.py)",
    }
)


def read_folded(path: Path, *, include_idle: bool = False) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stack = [short_frame(frame) for frame in frames.split(";") if frame]
            if stack and (include_idle or stack[-1] not in IDLE_LEAVES):
                stacks.append((stack, int(count)))
    return stacks


# The frames every request's stack passes through (the interpreter, uvicorn's CLI, the event loop,
# thread start-up): true for all samples, so they say nothing about where the time goes.
_SPINE = re.compile(
    r"\((?:<frozen runpy>|click/.*|uvicorn/(?:__main__|main|server|_compat)\.py|asyncio/runners\.py"
    r"|threading\.py|anyio/_backends/_asyncio\.py)\)$"
)


def summarise(path: Path, top: int = 15) -> dict[str, Any]:
    """Busy samples, the top frames by own time (leaf) and by time inside them (inclusive), in %."""
    stacks = read_folded(path)
    total = sum(count for _, count in stacks)
    idle = sum(count for _, count in read_folded(path, include_idle=True)) - total
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            if not _SPINE.search(frame):
                inclusive[frame] += count
        # The path that led to the leaf, shortest useful context: the three frames above it.
        callers.setdefault(frames[-1], Counter())[" < ".join(reversed(frames[-4:-1]))] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "percent": round(100 * count / total, 1), "samples": count}
            for frame, count in counter.most_common(top)
        ]

    app_frames = Counter({frame: count for frame, count in inclusive.items() if "(app/" in frame})
    top_own = table(own) if total else []
    for row in top_own:
        row["called_from"] = callers[row["frame"]].most_common(1)[0][0]
    return {
        "samples": total,
        "idle_samples_left_out": idle,
        "top_own": top_own,
        "top_inclusive": table(inclusive) if total else [],
        "top_app_inclusive": table(app_frames) if total else [],
    }


@dataclass
class _Node:
    name: str
    count: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


def flamegraph_svg(path: Path, output: Path, title: str, width: int = 1200, row: int = 16) -> None:
    """A static flame graph (root at the bottom); hover a box for its frame and share of samples."""
    root = _Node("all")
    for frames, count in read_folded(path):
        node = root
        node.count += count
        for frame in frames:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += count
    if root.count == 0:
        output.write_text(
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="40"><text y="20">no samples</text></svg>'
        )
        return

    boxes: list[tuple[float, int, float, _Node]] = []

    def place(node: _Node, x: float, depth: int) -> int:
        box_width = width * node.count / root.count
        if box_width < 0.3:
            return depth
        boxes.append((x, depth, box_width, node))
        deepest = depth
        for child in sorted(node.children.values(), key=lambda child: child.name):
            deepest = max(deepest, place(child, x, depth + 1))
            x += width * child.count / root.count
        return deepest

    depth = place(root, 0.0, 0)
    height = (depth + 1) * row + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="monospace" font-size="11">',
        f'<text x="4" y="16" font-size="14">{html.escape(title)} ({root.count} samples)</text>',
    ]
    for x, level, box_width, node in boxes:
        y = height - (level + 1) * row
        hue = int(hashlib.md5(node.name.encode()).hexdigest()[:2], 16) % 60
        share = 100 * node.count / root.count
        label = html.escape(node.name)
        parts.append(
            f"<g><title>{label} — {node.count} samples, {share:.1f}%</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{box_width:.2f}" height="{row - 1}" fill="hsl({hue},80%,60%)"/>'
        )
        characters = int(box_width / 7)
        if characters >= 4:
            text = node.name if len(node.name) <= characters else node.name[: characters - 2] + ".."
            parts.append(f'<text x="{x + 2:.2f}" y="{y + row - 4}">{html.escape(text)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    output.write_text("\n".join(parts))


def render_text(summaries: dict[str, dict[str, Any]], top: int = 10) -> str:
    """The summaries as plain text: own time with the calls that led there, then time inside frames."""
    lines = []
    for scenario, summary in summaries.items():
        lines.append(
            f"== {scenario}: {summary['samples']} busy samples ({summary['idle_samples_left_out']} idle left out)"
        )
        lines.append("  own time (leaf frames):")
        for row in summary["top_own"][:top]:
            lines.append(f"    {row['percent']:5.1f}%  {row['frame']}")
            lines.append(f"            from {row['called_from']}")
        lines.append("  time inside (inclusive, app/ frames):")
        for row in summary["top_app_inclusive"][:top]:
            lines.append(f"    {row['percent']:5.1f}%  {row['frame']}")
        lines.append("  time inside (inclusive, all frames below the event loop):")
        for row in summary["top_inclusive"][:top]:
            lines.append(f"    {row['percent']:5.1f}%  {row['frame']}")
        lines.append("")
    return "\n".join(lines)

"""Progress on stderr for the commands that run for minutes (a batch triage, eval, an import, a
convert's parity check): count, rate and time left, drawn by rich. Silent when stderr is not a
terminal, so logs, pipes and CI get no control characters."""

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text

ItemT = TypeVar("ItemT")


class RateColumn(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "-/s", style="progress.data.speed")


def track(items: Iterable[ItemT], description: str, total: int | None = None) -> Iterator[ItemT]:
    """`items`, drawing a progress bar on stderr while they are consumed (nothing when stderr is not a
    terminal)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield from items
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress:
        yield from progress.track(items, total=total, description=description)

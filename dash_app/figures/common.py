"""Pieces every figure builder uses: the time frame, the time axis and the empty state."""

from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias

from dash_app.figures.text import axis_time, bucket_time, utc_offset
from dash_app.figures.theme import GRID_COLOR, MUTED_COLOR, base_layout
from dash_app.timeutil import first_minute_at_or_after

# A Plotly figure as the plain JSON dict Dash sends: {"data": [trace, ...], "layout": {...}}.
Figure: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class Frame:
    """The time window a chart shows: epoch seconds `start` to `end`, in bins of `bin_seconds`.

    `revision` names the view for uirevision. Windows up to the buffer's use 1-minute bins; longer ones come
    from the stored history in 5-minute, hourly or 2-hourly bins. Times show as wall times in `zone` (IANA).
    """

    start: float
    end: float
    revision: str = ""
    bin_seconds: int = 60
    zone: str = "UTC"

    def time(self, epoch_seconds: float) -> str:
        """Return the axis string of an instant in the frame's zone."""
        return axis_time(epoch_seconds, self.zone)

    def bucket(self, iso_minute: str) -> str:
        """Return the axis string of a bucket's ISO UTC timestamp in the frame's zone."""
        return bucket_time(iso_minute, self.zone)

    @property
    def bins(self) -> range:
        """The start (epoch s) of every bin the window touches, oldest first."""
        size = self.bin_seconds
        return range(int(self.start // size) * size, int(self.end // size) * size + 1, size)

    @cached_property
    def axis_times(self) -> list[str]:
        """The axis string of every bin's start and then of the end: a step line's x, shared by every tool's line."""
        return [self.time(s) for s in self.bins] + [self.time(self.end)]

    @property
    def per_bin(self) -> str:
        """The bin as a rate's unit: "min", "5 min", "h", "2 h"."""
        if self.bin_seconds < 3600:
            minutes = self.bin_seconds // 60
            return "min" if minutes == 1 else f"{minutes} min"
        hours = self.bin_seconds // 3600
        return "h" if hours == 1 else f"{hours} h"

    @property
    def bar_width_ms(self) -> int:
        """Bar width: five sixths of a bin, so neighbouring bars stay apart."""
        return self.bin_seconds * 1000 * 5 // 6

    @property
    def time_format(self) -> str:
        """The d3 format of a time in hovers: with the date once the window spans more than a day."""
        return "%H:%M" if self.end - self.start <= 86400 else "%b %d %H:%M"

    @property
    def first_minute(self) -> int:
        """Index of the first whole minute in the window (epoch seconds // 60)."""
        return first_minute_at_or_after(self.start)

    @property
    def current_minute(self) -> int:
        """Index of the minute that holds `end`."""
        return int(self.end // 60)


def autorange_limits(start: float, end: float, zone: str = "UTC") -> dict[str, int]:
    """Return the autorangeoptions that pin a date axis to epoch seconds `start`..`end`, as wall times in `zone`.

    Given in milliseconds: Plotly uses these limits unconverted, and a date axis counts wall-time milliseconds.
    """
    return {
        "minallowed": round((start + utc_offset(start, zone)) * 1000),
        "maxallowed": round((end + utc_offset(end, zone)) * 1000),
    }


def time_axis(frame: Frame) -> dict[str, Any]:
    """Return a date axis that shows exactly the frame until the user zooms, and again after a double-click.

    The window is given as autorange limits, not as `range`: Plotly keeps a user's zoom across updates only
    while the figure's own range settings stay the same, and these limits move every second.
    """
    return {
        "type": "date",
        "autorange": True,
        "autorangeoptions": autorange_limits(frame.start, frame.end, frame.zone),
        "gridcolor": GRID_COLOR,
        "hoverformat": frame.time_format,
        "title": {"text": f"time ({frame.zone})", "font": {"size": 11, "color": MUTED_COLOR}, "standoff": 6},
        "automargin": True,
    }


def empty_figure(message: str, revision: str = "") -> Figure:
    """Return a figure with no axes that says `message` in its middle."""
    return {
        "data": [],
        "layout": base_layout(
            xaxis={"visible": False},
            yaxis={"visible": False},
            showlegend=False,
            uirevision=revision,
            annotations=[
                {
                    "text": message,
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                    "showarrow": False,
                    "font": {"size": 14, "color": MUTED_COLOR},
                }
            ],
        ),
    }


def rgba(hex_color: str, alpha: float) -> str:
    """Return `#rrggbb` as an rgba() string with `alpha`."""
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def limit_line(y: float, label: str, color: str, dash: str, at: str = "end") -> dict[str, Any]:
    """Return a labelled horizontal line across the plot at `y` (a commit, a total), its label at its `at` ("start", "end").

    A commit's label goes at the start and a total's at the end, so the two never print over each other however
    close the lines are (a pool of 2 whose commit is its total).
    """
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": y,
        "y1": y,
        "line": {"color": color, "width": 1.5, "dash": dash},
        "label": {"text": label, "textposition": at, "yanchor": "bottom", "font": {"size": 11, "color": color}},
    }

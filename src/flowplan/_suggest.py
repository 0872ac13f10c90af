"""Close-match suggestions for error messages ("did you mean 'load'?").

Place in the data flow: a helper of the lowest layer, used wherever a name is looked up.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean", "suggest"]


def suggest(name: str, known: Iterable[str]) -> str | None:
    """Return the known name closest to ``name``, or ``None`` when nothing is close.

    >>> suggest("laod", ["load", "extract"])
    'load'
    """
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, known: Iterable[str]) -> tuple[str, str | None]:
    """Return a sentence fragment suggesting a fix for an unknown ``name``, and the suggestion.

    >>> did_you_mean("laod", ["load", "extract"])[0]
    "did you mean 'load'?"
    """
    known_list = sorted(set(known))
    best = suggest(name, known_list)
    if best is not None:
        return f"did you mean {best!r}?", best
    if not known_list:
        return "no tasks are defined", None
    shown = ", ".join(repr(k) for k in known_list[:10])
    more = f" and {len(known_list) - 10} more" if len(known_list) > 10 else ""
    return f"known names are {shown}{more}", None

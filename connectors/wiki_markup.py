"""Jira wiki markup (Jira Data Center / Server REST v2 descriptions and comments) to text and back.

Our note's marker `[ticketsmith:...]` would render as a link, and a label with `*` or `_` as bold or
italics: writing escapes every markup character with a backslash, and reading undoes the escapes, so
the marker reads back exactly as written and a retried job finds its note. (A backslash is doubled;
some renderers show that as a line break, as wiki markup has no other literal backslash.)"""

import re

_SPECIAL = re.compile(r"([\\*_+^~\[\]{}|!#?-])")
# An escaped character, a block macro's tag ({code:java}, {color:red}), or a line's heading/quote mark.
_MARKUP = re.compile(
    r"\\(.)|\{(?:code|noformat|quote|panel|color|section|column)(?::[^}]*)?\}|^(?:h[1-6]|bq)\. ", re.MULTILINE
)


def text_to_wiki(text: str) -> str:
    """Text that Jira's wiki renderer shows as written, line breaks included."""
    return _SPECIAL.sub(r"\\\1", text)


def wiki_to_text(markup: object) -> str:
    """The readable text of wiki markup: escapes undone, macro tags and heading marks dropped."""
    if not isinstance(markup, str):
        return ""
    return _MARKUP.sub(lambda match: match.group(1) or "", markup)

"""Atlassian Document Format (Jira Cloud REST v3 descriptions and comments) to text and back."""

from typing import Any

_BLOCKS = {"paragraph", "heading", "blockquote", "codeBlock", "listItem", "panel", "tableRow", "rule", "mediaGroup"}


def adf_to_text(node: Any) -> str:
    """The readable text of an ADF document (or a plain string, as some API versions return)."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    attrs = node.get("attrs") or {}
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    if kind in ("mention", "emoji", "status", "date", "inlineCard"):
        return str(attrs.get("text") or attrs.get("shortName") or attrs.get("url") or "")
    inner = "".join(adf_to_text(child) for child in node.get("content") or [])
    if kind == "listItem":
        inner = "- " + inner.strip()
    return inner.strip("\n") + "\n" if kind in _BLOCKS else inner


def text_to_adf(text: str) -> dict[str, Any]:
    """A document with one paragraph per line; empty lines become empty paragraphs."""
    paragraphs: list[dict[str, Any]] = []
    for line in text.split("\n"):
        paragraph: dict[str, Any] = {"type": "paragraph", "content": []}
        if line:
            paragraph["content"].append({"type": "text", "text": line})
        paragraphs.append(paragraph)
    return {"type": "doc", "version": 1, "content": paragraphs}

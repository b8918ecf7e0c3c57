"""HTML pages that open from disk (the report's and the comparison's, with no script and no network),
and the tables they and the terminal show.

Everything shown is escaped; images are referenced by relative path, so a page survives copying
its folder elsewhere.
"""

import html
import re

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}figure{margin:1.5em 0}img{max-width:100%}
figcaption{color:#444;max-width:900px}code{background:#f3f3f3;padding:0 3px}"""


def breakable(text: str) -> str:
    """Escaped text that may wrap after a - _ or / between letters or digits (as in a run's folder
    name), and between words; never inside a word or a number."""
    return re.sub(r"(?<=\w)([-/]|_(?=[^\W\d]))(?=\w)", r"\1<wbr>", html.escape(text))


def table(header, rows) -> str:
    """An HTML table; numbers are right-aligned, everything is escaped; text wraps between words and
    after the - _ / of names, never inside a word."""

    def cell(v, tag="td"):
        numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
        text = f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if numeric else str(v)
        return f"<{tag}{' class=n' if numeric else ''}>{html.escape(text) if numeric else breakable(text)}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


WIDE = """body{max-width:none;margin:1.5em 1.5em}table{font-size:12px;width:100%}
td,th{padding:2px 4px;hyphens:manual}"""  # a table of many columns fits the window; words stay whole


def page(title: str, body: str, wide: bool = False) -> str:
    style = STYLE + ("\n" + WIDE if wide else "")
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
        f'content="width=device-width"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )


def figure(src: str, caption: str, alt: str = "") -> str:
    return (
        f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt or src)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def markdown_table(header, rows, right) -> str:
    """A markdown table of text cells, as a terminal or compare.md shows it; `right[i]` says whether
    column i holds numbers (right-aligned)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"

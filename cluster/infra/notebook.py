"""Progress in a Jupyter cell: the sweep's progress line, redrawn in place in the cell's output.

`DisplayStream` is a text stream for `cluster.tuner.callbacks.ProgressDisplay` in its terminal
mode ("\\r" redraws the line): it keeps the lines written so far (failures, retries) and the
current line, and updates one IPython display with them. Outside IPython it writes nothing.
"""
from __future__ import annotations


class DisplayStream:
    """A write()/flush() stream backed by one updatable IPython display (a <pre> block)."""

    def __init__(self, max_lines: int = 20):
        self.lines: list[str] = []
        self.current = ""
        self.max_lines = max_lines
        self._handle = None

    def write(self, text: str) -> int:
        for i, part in enumerate(text.split("\n")):
            if i:  # a newline ends the current line
                if self.current.strip():
                    self.lines.append(self.current)
                self.current = ""
            if "\r" in part:
                self.current = part.rsplit("\r", 1)[1]
            else:
                self.current += part
        return len(text)

    def text(self) -> str:
        return "\n".join((self.lines[-self.max_lines:] + [self.current]) if self.current else self.lines[-self.max_lines:])

    def flush(self) -> None:
        try:
            from IPython.display import HTML, display
        except ImportError:
            return
        import html

        content = HTML(f"<pre style='margin:0'>{html.escape(self.text())}</pre>")
        if self._handle is None:
            self._handle = display(content, display_id=True)
        elif self._handle is not None:
            self._handle.update(content)

    def isatty(self) -> bool:
        return True

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment state
        return {**self.__dict__, "_handle": None}

"""The cell README.md defines under ``<!-- readme-cell -->``, executed as a user would paste it."""

from pathlib import Path

_README = Path(__file__).resolve().parent.parent / "README.md"


def readme_namespace() -> dict:
    text = _README.read_text()
    start = text.index("```python", text.index("<!-- readme-cell -->")) + len("```python")
    code = text[start : text.index("```", start)]
    code = code[: code.index("cell = LeakyGated(")]  # the definitions only; tests choose the sizes
    ns: dict = {}
    exec(compile(code, str(_README), "exec"), ns)
    return ns


def readme_cell(hidden_size: int):
    return readme_namespace()["LeakyGated"](hidden_size)

"""Reading a JSON object from a file with errors that name the file (torch-free)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Type


def read_json_object(path, error: Type[Exception], missing: str) -> dict:
    """``path`` -> the JSON object it holds, else ``error`` naming the file and the problem.

    ``missing``: what to say when the file does not exist (e.g. what the directory needs).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: missing ({missing})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise error(f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc

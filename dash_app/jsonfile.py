"""Reading a JSON file that the user names (the tools file, the alert rules): its failures as one line each."""

import json
import os
from collections.abc import Callable
from typing import Any


def read_json(path: str | os.PathLike[str], where: str, error: Callable[[str], Exception]) -> Any:
    """Return the decoded contents of `path`; raise `error` with a line that starts with `where` when it cannot."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        raise error(f"{where}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{where}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: invalid JSON at line {exc.lineno}: {exc.msg}") from None

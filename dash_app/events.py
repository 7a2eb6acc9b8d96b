"""What an event may carry: the rule every name (tool, user, reason, id) must pass before it is recorded."""

import re

MAX_NAME_LENGTH = 200

# Characters no name may hold, whatever its source: C0 and C1 controls, lone UTF-16 surrogates (they cannot be
# encoded as UTF-8, so SQLite and orjson refuse them), and Unicode's non-characters (U+FDD0..U+FDEF and the last
# two code points of every plane), which are reserved for a program's internal use and never interchanged.
_NON_CHARACTERS = "".join(f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000))
_BAD_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NON_CHARACTERS + "]")
_BAD_ASCII = re.compile("[\x00-\x1f\x7f]")

_PROBLEMS = (
    (re.compile("[\x00-\x1f\x7f-\x9f]"), "must not contain control characters"),
    (re.compile("[\ud800-\udfff]"), "must be valid Unicode text (it holds a lone surrogate)"),
    (re.compile("[\ufdd0-\ufdef" + _NON_CHARACTERS + "]"), "must not contain Unicode non-characters"),
)


class InvalidName(ValueError):
    """A name that must not be recorded; the message starts with the field's name."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def name_problem(value: object) -> str | None:
    """Return why `value` is no acceptable name, or None when it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > MAX_NAME_LENGTH:
        return f"at most {MAX_NAME_LENGTH} characters"
    if not value.strip():
        return "must not be empty"
    return text_problem(value)


def text_problem(value: str) -> str | None:
    """Return why the string `value` holds a character no name may hold, or None."""
    # isascii() is O(1) in CPython, and nearly every real name is ASCII: one small regex then settles it.
    if (_BAD_ASCII if value.isascii() else _BAD_CHARACTER).search(value) is None:
        return None
    return next(problem for pattern, problem in _PROBLEMS if pattern.search(value))


def check_name(field: str, value: object, *, any_length: bool = False) -> str:
    """Return `value` when it is an acceptable name, else raise InvalidName for `field`.

    `any_length` drops the length limit, for ids that a source builds from several names.
    """
    if any_length and isinstance(value, str) and value:
        problem = text_problem(value)
    else:
        problem = name_problem(value)
    if problem is not None:
        raise InvalidName(field, problem)
    return value  # type: ignore[return-value]

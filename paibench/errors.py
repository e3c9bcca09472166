"""One exception type for every user-facing input error, so the CLI and the workflow print one clear line."""


class PaibenchError(Exception):
    """Bad input: the message names the field, the bad value and what is allowed."""


def bad_value(field: str, value, allowed) -> PaibenchError:
    if isinstance(allowed, (list, tuple, set, frozenset)):
        allowed = "one of " + ", ".join(map(str, sorted(allowed, key=str)))
    return PaibenchError(f"{field}: {value!r} is not allowed; expected {allowed}")

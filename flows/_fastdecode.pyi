from collections.abc import Callable
from typing import Any

def decode_batch(
    payloads: list[bytes],
    max_bytes: int,
    decoder: Callable[[bytes], Any],
    time_fields: dict[type, tuple[str, ...]],
    retry: tuple[type[BaseException], ...],
    /,
) -> tuple[list[Any], list[int]]: ...
def fast_fields(classes: tuple[type, ...], /) -> list[type]: ...

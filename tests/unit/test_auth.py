"""TokenAuthority: keys, expiry, rotation and the key file."""

from __future__ import annotations

import stat
from pathlib import Path

import orjson
import pytest

from emberserve.auth import TokenAuthority
from emberserve.errors import InvalidKeyError


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def file_keys(path: Path) -> dict[str, str]:
    return {name: entry["key"] for name, entry in orjson.loads(path.read_bytes()).items()}


def test_keys_expire_after_token_expiration_min_but_the_api_key_does_not(tmp_path: Path) -> None:
    clock = Clock()
    authority = TokenAuthority(tmp_path / "key_file.json", 2, clock=clock)
    keys = file_keys(authority.key_file)
    document = orjson.loads(authority.key_file.read_bytes())
    assert document["inference"]["expiration time"] == "2027-01-15T08:02:00.000Z"

    clock.now += 119
    assert authority.allows("inference", [f"Bearer {keys['inference']}"])
    clock.now += 1
    assert not authority.allows("inference", [f"Bearer {keys['inference']}"])
    assert not authority.allows("management", [f"Bearer {keys['management']}"])
    assert authority.allows("token", [f"Bearer {keys['API']}"])
    with pytest.raises(InvalidKeyError, match="Token Authorization failed"):
        authority.check("inference", [f"Bearer {keys['inference']}"])

    authority.rotate("inference")  # a fresh key with a fresh lifetime
    fresh = file_keys(authority.key_file)["inference"]
    assert fresh != keys["inference"]
    assert authority.allows("inference", [f"Bearer {fresh}"])


def test_rotation_replaces_the_file_atomically_with_mode_0600(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "key_file.json", 60)
    inode = authority.key_file.stat().st_ino
    authority.rotate("management")
    assert authority.key_file.stat().st_ino != inode  # a new file renamed over the old one
    assert stat.S_IMODE(authority.key_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key_file.json"]
    with pytest.raises(InvalidKeyError, match="Token Authentication failed"):
        authority.rotate("API")


def test_a_key_of_another_api_or_a_prefix_of_the_key_is_refused(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "key_file.json", 60)
    keys = file_keys(authority.key_file)
    assert not authority.allows("inference", [f"Bearer {keys['management']}"])
    assert not authority.allows("inference", [f"Bearer {keys['inference'][:-1]}"])
    assert not authority.allows("inference", [f"Bearer {keys['inference']}x"])
    assert not authority.allows("inference", [])
    assert not authority.allows("inference", ["Bearer " + "x" * 10_000])

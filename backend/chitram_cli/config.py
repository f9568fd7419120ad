"""Where the command line keeps its server URL and API key: `$XDG_CONFIG_HOME/chitram/config.toml`.

The file holds a secret, so it is written with mode 0600 (inside a 0700 folder) and replaced whole,
never left half-written. The environment (`CHITRAM_URL`, `CHITRAM_API_KEY`) and the `--server` and
`--api-key` options override it, in that order of strength: option, environment, file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from chitram_cli.errors import CliError, ExitCode

URL_VARIABLE = "CHITRAM_URL"
KEY_VARIABLE = "CHITRAM_API_KEY"


@dataclass(frozen=True)
class Credentials:
    server: str | None = None
    api_key: str | None = None


def config_path() -> Path:
    """`$XDG_CONFIG_HOME/chitram/config.toml`, with `~/.config` when the variable is unset or empty."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "chitram" / "config.toml"


def load_config(path: Path | None = None) -> Credentials:
    """What the file says; nothing for a missing file, a clear error for a broken one."""
    path = path or config_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Credentials()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}", ExitCode.LOCAL_FILE) from None
    server, api_key = data.get("server"), data.get("api_key")
    return Credentials(
        server=server if isinstance(server, str) else None, api_key=api_key if isinstance(api_key, str) else None
    )


def save_config(credentials: Credentials, path: Path | None = None) -> Path:
    """Write the file readable by its owner only; returns where it went."""
    path = path or config_path()
    values = {name: value for name, value in vars(credentials).items() if value is not None}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # Created 0600 from the start: a chmod after writing would leave a moment where others could read the key.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        tomli_w.dump(values, file)
    os.chmod(temporary, 0o600)  # an older temporary file keeps its mode through O_CREAT
    os.replace(temporary, path)
    return path


def resolve(server_option: str | None, key_option: str | None) -> Credentials:
    """The server URL and key in force: each from its option, else the environment, else the file."""
    stored = load_config()
    server = server_option or os.environ.get(URL_VARIABLE) or stored.server
    api_key = key_option or os.environ.get(KEY_VARIABLE) or stored.api_key
    return Credentials(server=normalise_server(server) if server else None, api_key=api_key)


def normalise_server(server: str) -> str:
    """`https://host/` as `https://host` (links are built by appending); a bare `host` gets https, since
    the key travels in every request, except on loopback (`localhost:8000` gets http)."""
    server = server.strip().rstrip("/")
    if "://" not in server:
        host = server.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
        loopback = host == "localhost" or host.startswith("127.") or host == "::1"
        server = ("http://" if loopback else "https://") + server
    return server

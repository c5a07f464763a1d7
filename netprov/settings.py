"""How and where to connect (never desired state): flags > NETPROV_* env > config file > defaults.

Only the CLI reads settings; it hands plain values to the adapters. Secrets are
``SecretStr`` so they can't be printed by accident.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import SecretStr, ValidationError
from pydantic_settings import (BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError,
                               TomlConfigSettingsSource)

DEFAULT_CONFIG = Path.home() / ".config" / "netprov" / "config.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NETPROV_", env_nested_delimiter="__", extra="ignore")
    config_file: ClassVar[Path | None] = None

    insecure: bool = False                 # skip TLS verification of the NAS (warns)
    ca_file: Path | None = None            # CA bundle for the NAS's certificate
    known_nas: Path | None = None          # NAS certificates pinned by `netprov trust` (default
                                           # ~/.config/netprov/known_nas)
    accept_new_host_key: bool = False      # trust-on-first-use for unknown SSH host keys
    known_hosts: Path | None = None        # default ~/.ssh/known_hosts
    ssh_config: Path | None = None         # default ~/.ssh/config
    timeout: float = 30.0                  # seconds, every SSH command; a NAS call or job without a sign of progress
    max_wait: float | None = None          # seconds, overall limit on one NAS call or job (default: 10 x timeout
                                           # for a call, none for a job that keeps progressing)
    parallel: int = 8                      # NAS calls in flight during apply (the NAS admits 20)
    api_key: SecretStr | None = None       # overrides every storage's api_key_env/api_key_file (one-NAS setups, CI)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        config = cls.config_file
        sources: list[Any] = [init_settings, env_settings]
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)


def load_settings(config: Path | None = None, *, warn: Callable[[str], None] | None = None,
                  **flags: Any) -> Settings:
    """Flags (only those given, i.e. not None) win over env, which wins over the config file.

    A bad value (in a flag, a NETPROV_* variable or the file) or a malformed file raises a one-line
    ``NetprovError`` naming the variable or ``file:line``, never the value (it may be a secret).
    A key the file has but netprov doesn't know is passed to ``warn`` (with the closest known key)."""
    from netprov.errors import NetprovError
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None and not path.exists():
        raise NetprovError(f"config file {path} does not exist")
    lines: dict[str, int] = {}
    if path is not None:
        lines = _check_config_file(path, warn)
    given = {k: v for k, v in flags.items() if v is not None}
    cls = type("ConfiguredSettings", (Settings,), {"config_file": path})
    try:
        return cls(**given)
    except ValidationError as exc:
        raise NetprovError("; ".join(_where(err, path, lines, given) for err in exc.errors())) from None
    except SettingsError as exc:
        raise NetprovError(f"settings: {str(exc).split(' from source ')[0]}") from None


def _check_config_file(path: Path, warn: Callable[[str], None] | None) -> dict[str, int]:
    """Parse the TOML file once to report a syntax error by line and warn about unknown keys;
    returns key -> line number."""
    import difflib
    import re
    import tomllib

    from netprov.errors import NetprovError
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise NetprovError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise NetprovError(f"config file {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                           f"{exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg) or re.search(r"\s*\(at end of document\)$", msg)
        where = f"{path}:{m.group(1)}" if m and m.groups() else str(path)
        raise NetprovError(f"{where}: not valid TOML: {msg[:m.start()] if m else msg}") from None
    lines: dict[str, int] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        key = re.match(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=", line)
        if key:
            lines.setdefault(key.group(1).strip('"'), n)
    known = list(Settings.model_fields)
    for key in data:
        if key not in Settings.model_fields and warn is not None:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else f" (known: {', '.join(known)})"
            where = f"{path}:{lines[key]}" if key in lines else str(path)
            warn(f"{where}: unknown setting `{key}`, ignored{hint}")
    return lines


def _where(err: Any, path: Path | None, lines: dict[str, int], given: dict[str, Any]) -> str:
    """Which flag, variable or file line a bad value came from, and what is wrong (never the value)."""
    import os
    field = str(err["loc"][0]) if err["loc"] else "?"
    msg = err["msg"].removeprefix("Value error, ")
    env = f"NETPROV_{field.upper()}"
    if field in given:
        source = f"--{field.replace('_', '-')}"
    elif any(k.upper() == env for k in os.environ):
        source = f"environment variable {env}"
    elif path is not None:
        source = f"{path}:{lines[field]}: {field}" if field in lines else f"{path}: {field}"
    else:
        source = field
    return f"{source}: {msg}"

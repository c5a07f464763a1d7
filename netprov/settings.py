"""How and where to connect (never desired state): flags > NETPROV_* env > config file > defaults.

Only the CLI reads settings; it hands plain values to the adapters. Secrets are
``SecretStr`` so they can't be printed by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

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


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Flags (only those given, i.e. not None) win over env, which wins over the config file."""
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None and not path.exists():
        from netprov.errors import NetprovError
        raise NetprovError(f"config file {path} does not exist")
    given = {k: v for k, v in flags.items() if v is not None}
    cls = type("ConfiguredSettings", (Settings,), {"config_file": path})
    return cls(**given)

"""Settings precedence: flags > NETPROV_* environment > config file > defaults; secrets stay secret."""

from __future__ import annotations

from pathlib import Path

from netprov.settings import load_settings


def test_precedence(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("timeout = 9\nparallel = 4\ninsecure = true\n")
    monkeypatch.delenv("NETPROV_TIMEOUT", raising=False)
    s = load_settings(cfg)
    assert (s.timeout, s.parallel, s.insecure) == (9.0, 4, True)
    monkeypatch.setenv("NETPROV_TIMEOUT", "5")
    assert load_settings(cfg).timeout == 5.0
    assert load_settings(cfg, timeout=1.5).timeout == 1.5
    assert load_settings(cfg, timeout=None).timeout == 5.0   # an unset flag doesn't override


def test_api_key_is_a_secret(monkeypatch) -> None:
    monkeypatch.setenv("NETPROV_API_KEY", "1-topsecretkey")
    s = load_settings(None)
    assert s.api_key.get_secret_value() == "1-topsecretkey"
    assert "topsecret" not in repr(s) and "topsecret" not in str(s.model_dump())


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    import pytest

    from netprov.errors import NetprovError
    with pytest.raises(NetprovError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")

"""Settings: one YAML file plus ``SKEWLESS_<KEY>`` environment overrides, errors at file:line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from skewless.errors import ConfigError
from skewless.runtime.settings import Settings, is_remote, join_uri, load_settings

CONF = """\
# test config
defs: my_defs
data_root: /data/raw
offline_root: /data/offline
redis_url: redis://cache:6379/1
spark:
  master: local[1]
  conf:
    spark.sql.shuffle.partitions: "4"
"""


@pytest.fixture(autouse=True)
def _empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty folder so the repository's conf/local.yaml is never picked up."""
    monkeypatch.chdir(tmp_path)


def write_conf(tmp_path: Path, text: str, name: str = "conf.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_defaults_without_any_config() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.defs == "feature_defs"
    assert settings.spark.master == "local[2]"
    assert settings.registry_uri == str(Path(".skewless/offline") / "_registry/registry.json")


def test_values_from_the_file(tmp_path: Path) -> None:
    settings = load_settings(write_conf(tmp_path, CONF), environ={})
    assert settings.defs == "my_defs"
    assert settings.data_root == "/data/raw"
    assert settings.offline_root == "/data/offline"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.spark.master == "local[1]"
    assert settings.spark.conf == {"spark.sql.shuffle.partitions": "4"}
    assert settings.registry_uri == "/data/offline/_registry/registry.json"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, CONF)
    settings = load_settings(
        conf,
        environ={
            "SKEWLESS_OFFLINE_ROOT": "s3://bucket/offline",
            "SKEWLESS_DATA_ROOT": "s3://bucket/raw",
            "SKEWLESS_DEFS": "other_defs",
            "SKEWLESS_REDIS_URL": "redis://:secret@redis:6379/0",
            "SKEWLESS_REGISTRY": "s3://bucket/registry.json",
            "SKEWLESS_SPARK_MASTER": "yarn",
        },
    )
    assert settings.offline_root == "s3://bucket/offline"
    assert settings.data_root == "s3://bucket/raw"
    assert settings.defs == "other_defs"
    assert settings.redis_url == "redis://:secret@redis:6379/0"
    assert settings.registry_uri == "s3://bucket/registry.json"
    assert settings.spark.master == "yarn"
    # The override of one spark setting keeps the others from the file.
    assert settings.spark.conf == {"spark.sql.shuffle.partitions": "4"}


def test_environment_alone_without_a_file() -> None:
    settings = load_settings(environ={"SKEWLESS_OFFLINE_ROOT": "s3://bucket/offline"})
    assert settings.offline_root == "s3://bucket/offline"
    assert settings.registry_uri == "s3://bucket/offline/_registry/registry.json"
    assert settings.table_uri("views/v/v1") == "s3://bucket/offline/views/v/v1"


def test_empty_environment_values_do_not_override(tmp_path: Path) -> None:
    settings = load_settings(write_conf(tmp_path, CONF), environ={"SKEWLESS_OFFLINE_ROOT": ""})
    assert settings.offline_root == "/data/offline"


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "defs: from_env_conf\n", name="env.yaml")
    assert load_settings(environ={"SKEWLESS_CONF": str(conf)}).defs == "from_env_conf"
    # An explicit path wins over SKEWLESS_CONF.
    explicit = write_conf(tmp_path, "defs: explicit\n", name="explicit.yaml")
    assert load_settings(explicit, environ={"SKEWLESS_CONF": str(conf)}).defs == "explicit"


def test_default_config_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    write_conf(tmp_path, "defs: local_defs\n", name="conf/local.yaml")
    assert load_settings(environ={}).defs == "local_defs"


def test_empty_config_file_gives_defaults(tmp_path: Path) -> None:
    assert load_settings(write_conf(tmp_path, "# nothing yet\n"), environ={}) == Settings()


def test_unknown_setting_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "defs: d\nofline_root: /x\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(conf, environ={})
    assert str(caught.value) == f"{conf}:2: ofline_root: unknown setting"


def test_unknown_nested_setting_names_its_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "spark:\n  master: local[1]\n  memory: 4g\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(conf, environ={})
    assert str(caught.value) == f"{conf}:3: spark.memory: unknown setting"


def test_every_bad_setting_is_reported(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "colour: red\nspark:\n  submit: maybe\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(conf, environ={})
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert f"{conf}:1: colour: unknown setting" in lines
    assert any(line.startswith(f"{conf}:3: spark.submit: ") for line in lines)


def test_duplicate_setting_is_an_error(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "defs: a\ndefs: b\n")
    with pytest.raises(ConfigError, match=r":2: defs: duplicate key \(first defined on line 1\)"):
        load_settings(conf, environ={})


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "defs: a\nspark: {master: local\n")
    with pytest.raises(ConfigError, match=rf"^{conf}:\d+: invalid YAML"):
        load_settings(conf, environ={})


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "# settings\n- defs\n")
    with pytest.raises(ConfigError, match=rf"^{conf}:2: expected a mapping of settings$"):
        load_settings(conf, environ={})


def test_several_documents_are_refused(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "defs: a\n---\ndefs: b\n")
    with pytest.raises(ConfigError, match="expected one YAML document"):
        load_settings(conf, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config .*missing\.yaml"):
        load_settings(tmp_path / "missing.yaml", environ={})


@pytest.mark.parametrize(
    ("root", "path", "expected"),
    [
        ("data", "raw/t", str(Path("data") / "raw/t")),
        ("data", "/abs/t", "/abs/t"),
        ("data", "s3://b/t", "s3://b/t"),
        ("s3://bucket/root/", "raw/t", "s3://bucket/root/raw/t"),
        ("file:///srv/data", "raw/t", "/srv/data/raw/t"),
    ],
)
def test_join_uri(root: str, path: str, expected: str) -> None:
    assert join_uri(root, path) == expected


def test_is_remote() -> None:
    assert is_remote("s3://b/k")
    assert not is_remote("file:///tmp/x")
    assert not is_remote("/tmp/x")

"""prepare_dagster_home on a DAGSTER_HOME that already has a dagster.yaml: the template's top-level settings it lacks
are added, the user's own kept as written, atomically and once; malformed YAML is a clear error, the file untouched.
Real files and a real Dagster instance loaded from them."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from fic_assets.platform.instance import TEMPLATE, InstanceConfigError, complete_instance_config, prepare_dagster_home

# A dagster.yaml as the platform wrote it before run monitoring and Python logs, plus a setting of the user's own
# and one of the template's the user changed.
OLD_STYLE = """# my instance
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 2   # mine: a small machine
telemetry:
  enabled: true
run_retries:
  enabled: true
  max_retries: 1
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    return tmp_path / "dagster_home"


def test_old_style_file_gets_run_monitoring_and_python_logs_and_keeps_every_user_value(home, capsys):
    """Bad input: an existing dagster.yaml from before run monitoring (no run_monitoring, no python_logs), with a
    value of the template's set otherwise by the user (max_concurrent_runs 2, telemetry on) and a key of their own."""
    config = home / "dagster.yaml"
    config.write_text(OLD_STYLE)
    assert prepare_dagster_home() == home.resolve()

    text = config.read_text()
    assert text.startswith(OLD_STYLE)  # the user's text, comments and all, byte for byte
    merged, template = yaml.safe_load(text), yaml.safe_load(TEMPLATE.read_text())
    assert merged["run_monitoring"] == template["run_monitoring"] and merged["python_logs"] == template["python_logs"]
    assert merged["concurrency"]["runs"]["max_concurrent_runs"] == 2 and merged["telemetry"] == {"enabled": True}
    assert merged["run_retries"] == {"enabled": True, "max_retries": 1}
    assert set(merged) == set(template) | {"run_retries"}
    assert "free_slots_after_run_end_seconds" in text and "# Dagster's run monitoring" in text  # with its comment
    err = capsys.readouterr().err
    assert err.count("added the platform's settings it lacked: run_monitoring, python_logs") == 1, err
    assert str(config) in err
    assert not [path.name for path in home.iterdir() if path.name.startswith(".")]  # no candidate or partial file left
    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster reads the result as the instance's config
        assert instance.run_monitoring_enabled and instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 2


def test_second_run_adds_nothing_and_says_nothing(home, capsys):
    config = home / "dagster.yaml"
    config.write_text(OLD_STYLE)
    prepare_dagster_home()
    once = config.read_bytes()
    capsys.readouterr()
    prepare_dagster_home()
    assert config.read_bytes() == once
    assert capsys.readouterr().err == ""
    assert complete_instance_config(config) == ([], {})


def test_malformed_yaml_is_a_clear_error_naming_the_file_and_leaves_it_untouched(home):
    """Bad input: an unclosed flow mapping and a tab-indented key, as a hand edit leaves them."""
    config = home / "dagster.yaml"
    broken = b"concurrency: {pools: {default_limit: 1}\n\ttelemetry:\n  enabled: false\n"
    config.write_bytes(broken)
    with pytest.raises(InstanceConfigError, match="is not valid YAML") as error:
        complete_instance_config(config)
    assert str(config) in str(error.value) and "left as it was" in str(error.value)
    with pytest.raises(SystemExit, match=f"error: {config} is not valid YAML"):
        prepare_dagster_home()
    assert config.read_bytes() == broken
    assert sorted(path.name for path in home.iterdir()) == ["dagster.yaml"]  # no temp file left either


def test_a_yaml_list_instead_of_settings_is_refused_untouched(home):
    """Bad input: a dagster.yaml that is a YAML list."""
    config = home / "dagster.yaml"
    config.write_text("- run_monitoring\n- python_logs\n")
    with pytest.raises(InstanceConfigError, match="holds a YAML list, not a mapping"):
        complete_instance_config(config)
    assert config.read_text() == "- run_monitoring\n- python_logs\n"


def test_a_setting_dagster_refuses_beside_the_users_is_left_out_and_said(home, capsys):
    """Bad input: an older file that limits runs in run_coordinator's QueuedRunCoordinator config; Dagster refuses
    the template's `concurrency: runs` beside it, so `concurrency` stays out while the others are added."""
    config = home / "dagster.yaml"
    mine = ("run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
            "  config:\n    max_concurrent_runs: 3\n")
    config.write_text(mine)
    prepare_dagster_home()
    merged = yaml.safe_load(config.read_text())
    assert "concurrency" not in merged and "run_monitoring" in merged and "python_logs" in merged
    assert config.read_text().startswith(mine)
    err = capsys.readouterr().err
    assert "left out the platform's `concurrency` setting: Dagster refuses it" in err and "max_concurrent_runs" in err


def test_empty_file_gets_the_whole_template(home):
    config = home / "dagster.yaml"
    config.write_text("")
    added, kept_out = complete_instance_config(config)
    assert added == list(yaml.safe_load(TEMPLATE.read_text())) and kept_out == {}
    assert yaml.safe_load(config.read_text()) == yaml.safe_load(TEMPLATE.read_text())

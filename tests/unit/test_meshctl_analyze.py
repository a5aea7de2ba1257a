"""`meshctl analyze` on files: output formats, thresholds, exit codes and unusable inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from meshctl.__main__ import main
from tests.support.shared import BOOKINFO_NETWORKING

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, name: http}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1}
spec: {replicas: 1}
"""
UNKNOWN_HOST_RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reveiws, namespace: default}
spec: {host: reveiws}
"""
NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n"
SUBSET_ERROR = (
    "Error [IST0101] (VirtualService default/reviews {}) "
    'Referenced host+subset in destinationrule not found: "reviews+v3"'
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A tree: services, reviews routed to v3 with no DestinationRule, and files to skip."""
    root = tmp_path / "config"
    (root / "routing").mkdir(parents=True)
    (root / "services.yaml").write_text(SERVICES)
    shutil.copy(BOOKINFO_NETWORKING / "virtual-service-reviews-v3.yaml", root / "routing")
    (root / "README.md").write_text("not configuration")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "broken.yaml").write_text("{{{")
    return root


def test_text_output_lists_messages_and_exits_79(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(config)]) == 79
    out, err = capsys.readouterr()
    vs_file = config / "routing" / "virtual-service-reviews-v3.yaml"
    assert out.splitlines() == [SUBSET_ERROR.format(vs_file)]
    assert f"Error: Analyzers found issues when analyzing {config}." in err


def test_json_and_yaml_output(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "-o", "json", str(config)]) == 79
    expected = {
        "code": "IST0101",
        "level": "Error",
        "resource": "VirtualService default/reviews",
        "origin": str(config / "routing" / "virtual-service-reviews-v3.yaml"),
        "message": 'Referenced host+subset in destinationrule not found: "reviews+v3"',
    }
    assert json.loads(capsys.readouterr().out) == [expected]
    assert main(["analyze", "--output", "yaml", str(config)]) == 79
    assert yaml.safe_load(capsys.readouterr().out) == [expected]


def test_clean_input_says_so_and_exits_0(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = BOOKINFO_NETWORKING / "destination-rule-reviews.yaml"
    assert main(["analyze", str(config / "services.yaml"), str(rules)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"\u2714 No validation issues found when analyzing {config / 'services.yaml'}, {rules}.\n"
    )
    assert main(["analyze", "-o", "json", str(config / "services.yaml")]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_thresholds_decide_the_exit_code_and_what_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rule.yaml").write_text(UNKNOWN_HOST_RULE)  # a Warning
    (tmp_path / "namespace.yaml").write_text(NAMESPACE)  # an Info
    path = str(tmp_path)
    assert main(["analyze", path]) == 0
    assert [line.split(" [")[0] for line in capsys.readouterr().out.splitlines()] == [
        "Warning",
        "Info",
    ]
    assert main(["analyze", "--failure-threshold", "warning", path]) == 79
    capsys.readouterr()
    quiet = ["analyze", "--failure-threshold", "Info", "--output-threshold", "Error", path]
    assert main(quiet) == 79
    out, err = capsys.readouterr()
    assert out == "" and "No validation issues found" in err


def test_missing_paths_and_usage_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["analyze", str(missing)]) == 2
    assert capsys.readouterr().err == f"Error: {missing}: no such file or directory\n"
    assert main(["analyze"]) == 2
    assert "give files or directories to analyze, or --galley" in capsys.readouterr().err
    assert main(["analyze", "--failure-threshold", "fatal", str(tmp_path)]) == 2
    assert "unknown level 'fatal'" in capsys.readouterr().err
    assert main(["analyze", "--galley", "no-port"]) == 2
    assert main(["analyze", "-o", "xml", str(tmp_path)]) == 2


def test_unparseable_files_are_reported_and_the_rest_analyzed(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = config / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    assert main(["analyze", str(config)]) == 79  # issues found outrank the unreadable file
    out, err = capsys.readouterr()
    assert "reviews+v3" in out and f"Error: {broken}: document: cannot parse YAML" in err
    assert main(["analyze", str(broken), str(config / "services.yaml")]) == 2
    assert "but 1 file could not be read" in capsys.readouterr().err


def test_an_unreachable_galley_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    address = "127.0.0.1:1"  # tcpmux: nothing listens there
    assert main(["analyze", "--galley", address, "--timeout", "0.3"]) == 2
    assert capsys.readouterr().err == (
        f"Error: cannot connect to galley at {address} (is it running?)\n"
    )

"""`make backtest`: what the command says when there is nothing to replay yet."""

import shutil

from nbmlops.commands import backtest as tool
from tests.conftest import PROJECT


def test_without_a_build_the_tool_says_what_to_run(tmp_path, capsys):
    for name in ("pipeline.yaml", "env.ci.yaml"):
        shutil.copy(PROJECT / name, tmp_path / name)
    assert tool.main(["--env", str(tmp_path / "env.ci.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no data of a build" in err and "run `make build` with env.ci.yaml first" in err
    assert tool.main(["--env", str(tmp_path / "env.ci.yaml"), "--policies", "nevr"]) == 2
    assert "no backtest policy ['nevr']" in capsys.readouterr().err

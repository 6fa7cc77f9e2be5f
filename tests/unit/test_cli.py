"""The command line: help with examples for every command, one-sentence errors."""

from __future__ import annotations

import pytest

from shoprec.cli import build_parser, main

COMMANDS = [
    "ingest",
    "generate",
    "features",
    "train-als",
    "train-hybrid",
    "train-ranker",
    "bundles",
    "recommend",
    "evaluate",
    "pipeline",
    "time-report",
    "ui",
]


def test_top_level_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert "examples:" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_common_options(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--env", "--data-root", "--as-of", "--set"):
        assert option in out


def test_config_errors_are_one_sentence_and_a_hint(capsys, tmp_path):
    code = main(["ingest", "--data-root", str(tmp_path), "--set", "ingest.bogus=1"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "shoprec ingest: error: --set: unknown config key 'ingest.bogus'"
    assert err[1].startswith("  hint: known keys of 'ingest':")
    assert "Traceback" not in "\n".join(err)


def test_bad_as_of_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["pipeline", "--as-of", "11/01/2011"])
    assert exit_.value.code == 2
    assert "is not a date like 2011-11-01" in capsys.readouterr().err


def test_verbose_shows_the_traceback(tmp_path):
    from shoprec.errors import ConfigError

    with pytest.raises(ConfigError):
        main(["ingest", "--verbose", "--data-root", str(tmp_path), "--set", "ingest.bogus=1"])


def test_recommend_without_features_is_one_sentence_and_a_hint(spark, capsys, tmp_path):
    code = main(["recommend", "--data-root", str(tmp_path / "empty"), "--as-of", "2011-11-01"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"shoprec recommend: error: silver.interactions does not exist under {tmp_path / 'empty'}"
    assert err[1] == "  hint: run shoprec ingest first (or shoprec pipeline)"


def test_every_spark_submit_entry_point_runs_a_command_the_cli_has(repo):
    """jobs/<stage>.py is ``main(["<stage>", *argv])``: a renamed command fails here, not on a cluster
    (the cluster test submits the stage jobs; this covers every file, maintain and generate included)."""
    import argparse
    import ast

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    commands = set(sub.choices)
    jobs = sorted((repo / "jobs").glob("*.py"))
    assert len(jobs) >= 10
    for job in jobs:
        calls = [
            node
            for node in ast.walk(ast.parse(job.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "main"
        ]
        assert len(calls) == 1, job
        (argv,) = calls[0].args
        assert isinstance(argv, ast.List) and isinstance(argv.elts[0], ast.Constant), job
        assert argv.elts[0].value in commands, f"{job.name} runs {argv.elts[0].value!r}"
        assert job.stem.replace("_", "-") == argv.elts[0].value, job

"""The command line run.json, the .run file and the READMEs record: a token in a URL (--endpoint, --fork) never
reaches them, every other argument is kept as typed."""

from __future__ import annotations

from subtool.cli_options import recorded_command


def test_user_info_query_and_fragment_of_a_url_are_replaced():
    argv = [
        "run",
        "--endpoint",
        "http://user:tok_SECRET@127.0.0.1:8000/v1?api_key=tok_SECRET#tok_SECRET",
        "--fork",
        "https://tok_SECRET@github.com/a/b",
    ]
    got = recorded_command(argv)
    assert "tok_SECRET" not in " ".join(got)
    assert got == [
        "subtool",
        "run",
        "--endpoint",
        "http://***@127.0.0.1:8000/v1?***#***",
        "--fork",
        "https://***@github.com/a/b",
    ]


def test_paths_names_and_plain_urls_are_kept_as_typed():
    argv = ["all", "--submitter", "Team@X", "--out", "/tmp/a b", "--fork", "git@github.com:a/b.git"]
    argv += ["--endpoint", "http://127.0.0.1:8000/v1", "--model-path", "C:/models/bert", "--fork", "file:///srv/f.git"]
    assert recorded_command(argv) == ["subtool", *argv]

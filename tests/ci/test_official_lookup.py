"""Where the tests find the official MLCommons checker: $SUBTOOL_OFFICIAL (a checkout or a bare tools/submission)
when set, else the shared copy beside the repository; when neither holds it, the skip reason says what is missing."""

from __future__ import annotations

from support import official as conftest  # where the lookup lives (tests/conftest.py uses it)


def _fake_checker(root):
    main = root / "tools" / "submission" / "submission_checker" / "main.py"
    main.parent.mkdir(parents=True)
    main.write_text("")
    return main.parents[1]


def test_subtool_official_wins_and_may_be_a_checkout_or_tools_submission(tmp_path, monkeypatch):
    checkout = tmp_path / "inference"
    submission = _fake_checker(checkout)
    monkeypatch.setenv("SUBTOOL_OFFICIAL", str(checkout))
    assert conftest.official_checker_dir() == submission
    monkeypatch.setenv("SUBTOOL_OFFICIAL", str(submission))
    assert conftest.official_checker_dir() == submission


def test_an_empty_subtool_official_is_not_silently_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("SUBTOOL_OFFICIAL", str(tmp_path))
    assert conftest.official_checker_dir() is None
    assert conftest.official_skip_reason() == (
        f"SUBTOOL_OFFICIAL={tmp_path} holds no official checker (tools/submission/submission_checker/main.py)"
    )


def test_without_the_variable_the_shared_copy_beside_the_repository_is_used(tmp_path, monkeypatch):
    repo = tmp_path / "work" / "repo"
    repo.mkdir(parents=True)
    monkeypatch.delenv("SUBTOOL_OFFICIAL", raising=False)
    monkeypatch.setattr(conftest, "REPO_ROOT", repo)
    assert conftest.official_checker_dir() is None
    assert "../shared/official/inference-b66003e" in conftest.official_skip_reason()
    submission = _fake_checker(tmp_path / "work" / "shared" / "official" / "inference-b66003e")
    assert conftest.official_checker_dir() == submission  # CI's layout: a clone with shared/ beside it

"""The session child's console: its stderr is a pipe, and a long line must reach the log whole."""

from __future__ import annotations

import io

from subtool.runner.session import session_console


def test_a_long_line_reaches_the_log_unbroken():
    # on an H200 the tiny llama demo's accuracy line was cut at 80 columns: "gen_len = " and "2650120" apart
    line = (
        "  rouge1 = 0.4843  rouge2 = 0.0  rougeL = 0.4763  rougeLsum = 0.4789  gen_len = 2650120  gen_num = 24576"
        "  gen_tok_len = 393180  tokens_per_sample = 16.0"
    )
    out = io.StringIO()
    session_console(False, file=out).print(line)
    assert out.getvalue() == line + "\n"
    quiet = io.StringIO()
    session_console(True, file=quiet).print(line)
    assert quiet.getvalue() == ""

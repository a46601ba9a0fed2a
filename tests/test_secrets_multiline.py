"""Invariant 8 for secrets that span lines: a PEM key or a service-account JSON in a secret-named variable is
masked line by line, as printed and as JSON escapes it, in the stage log, the daemon log, state (the failed
stage's last lines) and their copies on home. Before, masking was per line and such a value went out in clear."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from tests.conftest import Project


def test_a_multiline_secret_never_reaches_logs_or_state(make_project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    body = [secrets.token_urlsafe(48) for _ in range(4)]
    key = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----"
    credential = json.dumps({"type": "service_account", "private_key": key, "client_id": secrets.token_hex(10)})
    script = tmp_path / "leak.sh"
    script.write_text(
        'echo "key: $SERVICE_PRIVATE_KEY"\n'
        'printf "%s\\n" "$GOOGLE_CREDENTIAL_JSON"\n'  # the JSON file's text: its key holds \\n escapes
        "python3 -c \"import json, os; print(json.dumps(os.environ['SERVICE_PRIVATE_KEY']))\"\n"
        "exit 3\n"
    )
    p: Project = make_project(f"""
[logs]
mirror_interval_s = 0.2
[[runs]]
name = "r"
[[runs.stages]]
name = "leak"
command = ["sh", "{script}"]
[runs.stages.env]
SERVICE_PRIVATE_KEY = '''{key}'''
GOOGLE_CREDENTIAL_JSON = '{credential.replace("{", "{{").replace("}", "}}")}'
""")  # fmt: skip
    p.cli("start", check=True)
    p.wait_run("r", ("failed",))
    p.cli("stop", "--timeout", "30", check=True)
    stage_log = (p.work / "logs" / "r" / "leak.log").read_text()
    assert "key: ***" in stage_log, stage_log
    files = [p.work / "state.json", p.work / "logs" / "daemon.jsonl", p.work / "logs" / "r" / "leak.log"]
    files += [f for f in (p.home / ".f5guard").rglob("*") if f.is_file()]
    assert any("logs" in f.parts and f.name == "leak.log" for f in files), "the home log mirror is checked too"
    for path in files:
        text = path.read_text(errors="replace")
        for line in body:
            assert line not in text, f"a line of the secret in {path}"
    last = p.state()["runs"]["r"]["stages"]["leak"]["last_lines"]
    assert last and all(line not in "\n".join(last) for line in body)

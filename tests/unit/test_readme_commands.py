"""The README's two commands are contracts: CI must run the test command exactly as the README gives it."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_command(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"\*\*{heading}\*\*.*?```bash\n(.*?)\n```", text, re.S)
    assert match, f"README has no command under **{heading}**"
    return match.group(1)


def test_ci_runs_the_readme_test_command_verbatim():
    assert readme_command("Run the tests") in (REPO / ".ci" / "run").read_text()


def test_readme_run_command_uses_the_documented_entry_point():
    command = readme_command("Run the main job")
    assert "imagegen run examples/spring-launch.yaml --out ./imagegen-output" in command
    assert (REPO / "examples" / "spring-launch.yaml").is_file()


def test_readme_house_rules_command_runs_as_written():
    """The README's command for only the house-rule checks (tests/architecture) runs and passes as written."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"Only those checks:\n\n```bash\n(.*?)\n```", text, re.S)
    assert match, "README lost the house-rules command"
    done = subprocess.run(match.group(1), shell=True, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout)

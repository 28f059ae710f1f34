"""The layer folders install as imagegen_flows.*: a user's own flows/tasks packages and ours never collide."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_users_own_flows_and_tasks_packages_do_not_shadow_ours(tmp_path):
    for name in ("flows", "tasks", "blocks", "deployments"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("OWNER = 'user'\n")
    script = textwrap.dedent("""
        import flows, tasks, blocks, deployments
        assert {flows.OWNER, tasks.OWNER, blocks.OWNER, deployments.OWNER} == {"user"}
        from imagegen_flows.flows.campaign import campaign_flow
        from imagegen_flows.flows.size_sets import size_set_flow
        from imagegen_flows.deployments.cli import main
        import imagegen_flows.tasks.generate as ours
        assert ours.__name__ == "imagegen_flows.tasks.generate"
        assert campaign_flow.name == "imagegen-campaign" and size_set_flow.name == "imagegen-size-set"
        assert tasks.OWNER == "user"  # importing ours left the user's module in place
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                               "PREFECT_HOME": str(tmp_path / "prefect-home")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_no_generic_top_level_names_are_installed(tmp_path):
    """Outside the checkout, `import tasks` finds nothing of ours."""
    script = ("import importlib.util as u\n"
              "print([n for n in ('flows', 'tasks', 'blocks', 'deployments') if u.find_spec(n)])")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

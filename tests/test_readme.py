"""The README's first lines are the two set-up commands, and CI runs the test one."""

from conftest import PROJECT


def readme_commands():
    lines = (PROJECT / "README.md").read_text().splitlines()
    block = lines[lines.index("```sh") + 1 : lines.index("```")]
    return [line.split("#")[0].strip() for line in block]


def test_readme_opens_with_the_main_job_and_the_test_command():
    main_job, tests = readme_commands()
    assert main_job.endswith("nox -s bench") and tests.endswith("nox -s tests")


def test_ci_runs_the_readme_test_command():
    _, tests = readme_commands()
    assert tests in (PROJECT / ".ci" / "run").read_text().splitlines()

"""Every example in README.md runs: each ```python block executes, and each ``scalarbp ...``
command of a shell block exits 0, run in this process through ``scalarbp.cli.main``. The
only commands not run are the set-up commands of "Set up" (a virtual environment, ``pip``,
the test suite itself), named in :data:`SET_UP`; they are the ones ``.ci/run`` runs. The
README stays at most 250 lines, and its links, and the links between the pages of
``docs/``, resolve."""
import re
import shlex
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"

#: The README's two commands ("Set up"), exactly as written there.
MAIN_JOB = "python3 -m venv .venv && . .venv/bin/activate && pip install . && scalarbp train"
TEST_COMMAND = 'python3 -m venv .venv && . .venv/bin/activate && pip install ".[test]" && python -m pytest -q'

#: The set-up commands the test does not run: a virtual environment, installing, the tests.
SET_UP = {"python3 -m venv .venv", ". .venv/bin/activate", "pip install .", 'pip install ".[test]"',
          "python -m pytest -q"}


def fenced_blocks(text, languages):
    """``(line, language, code)`` of each fenced block in one of ``languages``."""
    blocks = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        if match.group(1) in languages:
            blocks.append((text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)))
    return blocks


def shell_commands(code):
    """The commands of a shell block, in order: continuation lines joined, comments
    dropped, ``&&`` chains split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            commands += [part.strip() for part in line.split("&&")]
    return commands


README_TEXT = README.read_text()
PYTHON = fenced_blocks(README_TEXT, {"python"})
SHELL = fenced_blocks(README_TEXT, {"bash", "sh", "shell", "console", ""})


def test_the_readme_is_at_most_250_lines():
    assert len(README_TEXT.splitlines()) <= 250


@pytest.mark.parametrize("line, language, code", PYTHON, ids=[f"line-{line}" for line, _, _ in PYTHON])
def test_every_python_example_in_the_readme_runs(line, language, code, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                                     # the examples write files
    exec(compile(code, f"README.md, the block at line {line}", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("line, language, code", SHELL, ids=[f"line-{line}" for line, _, _ in SHELL])
def test_every_scalarbp_command_in_the_readme_exits_0(line, language, code, tmp_path, monkeypatch, capsys):
    """A block's commands run in order in one directory, as a reader would type them."""
    monkeypatch.chdir(tmp_path)
    for command in shell_commands(code):
        if command in SET_UP:
            continue
        argv = shlex.split(command)
        assert argv[0] == "scalarbp", f"README.md line {line}: {command!r} is neither scalarbp nor a set-up command"
        try:
            status, out, err = run_cli(capsys, *argv[1:])
        except SystemExit as exit_:                                 # options that argparse rejects
            status, (out, err) = exit_.code, capsys.readouterr()
        assert status == 0, f"README.md line {line}: {command!r} exited {status}\n{out}\n{err}"


def test_the_readme_skips_only_the_set_up_commands_that_ci_runs():
    """What is skipped is the two "Set up" commands but ``scalarbp train``; the test
    command's steps are those of ``.ci/run`` (its virtual environment at ``$venv``)."""
    assert MAIN_JOB in README_TEXT and TEST_COMMAND in README_TEXT
    main_job, test_command = shell_commands(MAIN_JOB), shell_commands(TEST_COMMAND)
    assert main_job[-1] == "scalarbp train" and SET_UP == set(main_job[:-1]) | set(test_command)
    commands = [command for _, _, code in SHELL for command in shell_commands(code)]
    assert {command for command in commands if shlex.split(command)[0] != "scalarbp"} == SET_UP
    ci = re.sub(r'"?\$venv([^"\s]*)"?', r".venv\1", (ROOT / ".ci" / "run").read_text())
    ci_lines = {line.strip() for line in ci.splitlines()}
    for step in test_command:
        assert step in ci_lines, f".ci/run does not run {step!r}"


def anchors(path):
    """GitHub's anchors for the headings of a Markdown file."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), re.M):
        slugs.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return slugs


PAGES = [README, ROOT / "BENCHMARKS.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_to_a_file_and_heading(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"\w+:", target):                               # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: {target}"

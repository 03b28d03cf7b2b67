"""What ``harbour`` loads at start: the list of sub-commands costs none of their imports."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from harbour.cli import main


def test_the_summary_lists_exactly_what_the_whole_tree_lists() -> None:
    runner = CliRunner()
    whole = runner.invoke(main.build(), ["--help"], terminal_width=100)
    summary = runner.invoke(main.build(summary=True), ["--help"], terminal_width=100)
    assert whole.exit_code == summary.exit_code == 0
    assert summary.output == whole.output
    assert set(main.SUMMARY) == set(main.COMMANDS)


def _harbour_modules(*argv: str) -> set[str]:
    code = (
        "import sys\n"
        f"sys.argv = ['harbour', *{list(argv)!r}]\n"
        "from harbour.cli import main\n"
        "try:\n"
        "    main.run()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('harbour', 'sqlalchemy', 'web3')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.strip().splitlines()[-1].split())


def test_help_and_version_import_no_sub_command() -> None:
    for argv in (["--help"], ["--version"], []):
        loaded = _harbour_modules(*argv)
        assert loaded <= {"harbour", "harbour.cli", "harbour.cli.main", "harbour.cli.tree", "harbour.cli.output"}, (
            argv,
            loaded,
        )


def test_a_sub_command_imports_only_its_own_module() -> None:
    loaded = _harbour_modules("authority", "--help")
    assert "harbour.cli.authority" in loaded
    assert not {"harbour.cli.custody", "harbour.cli.transfer", "sqlalchemy", "web3"} & loaded


def test_an_auditor_checking_proofs_loads_no_database_code() -> None:
    loaded = _harbour_modules("audit", "verify-proof", "--help")
    assert "harbour.cli.audit" in loaded
    assert not {"sqlalchemy", "harbour.custody.service", "harbour.cli.custody"} & loaded

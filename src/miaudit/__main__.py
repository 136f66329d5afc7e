"""``python -m miaudit``: the ``miaudit`` command."""

from miaudit.cli import app

app(prog_name="miaudit")

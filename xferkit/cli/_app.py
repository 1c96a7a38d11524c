"""The command line's commands (click and rich, from the ``cli`` extra)."""

from __future__ import annotations

import click

from ._batch import batch
from ._demo import demo
from ._journal import journal
from ._logging import LoggingGroup, verbosity_options
from ._resume import resume
from ._settle import abandon, account, adopt, settle  # noqa: F401 - journal subcommands
from ._sim import sim
from ._transfer import transfer


@click.group(cls=LoggingGroup)
@verbosity_options
@click.version_option(package_name="xferkit")
def app() -> None:
    """Exactly-once transfers between your own accounts on crypto venues.

    Exit status: 0 done, 1 not done (refused, unknown or unresolved; or a key is unknown),
    2 could not run. Quiet: -v/--verbose shows the library's log (INFO), --debug more.
    """


app.add_command(transfer)
app.add_command(batch)
app.add_command(journal)
app.add_command(resume)
app.add_command(sim)
app.add_command(demo)

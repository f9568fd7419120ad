"""`chitram`: the command line for a Chitram server.

    chitram login                      ask for the server, email and password; store a new API key
    chitram upload FILE... [--private] [--expires 7d] [--json]
    chitram ls [--limit N] [--json]
    chitram rm ID...
    chitram open ID                    the image's page in the web browser ($BROWSER is honoured)

The server URL and key come from `$XDG_CONFIG_HOME/chitram/config.toml` (written by `login`, mode
0600), overridden by the environment (`CHITRAM_URL`, `CHITRAM_API_KEY`) and then by `--server` and
`--api-key`. Every failure prints one line on stderr and ends with its own exit code:

    0 success, 1 other failure (the server's code and message are shown), 2 usage,
    3 server unreachable, 4 not logged in or bad/revoked key (401),
    5 forbidden, missing scope or quota used up (403), 6 file too large (413),
    7 rate limited (429, with the wait), 8 not found (404), 9 local file missing or unreadable.

With several files or ids, each is tried; the exit code is then that of the first failure.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn

from chitram_cli import __version__
from chitram_cli.client import ChitramClient
from chitram_cli.config import KEY_VARIABLE, URL_VARIABLE, Credentials, normalise_server, resolve, save_config
from chitram_cli.errors import CliError, ExitCode
from chitram_cli.output import image_table, local_time, page_url, with_absolute_links

# `\b` keeps Click from re-flowing the list into one paragraph.
EXIT_CODES = f"""\b
Exit codes:
  0  success
  1  any other failure (the server's code and message are shown)
  2  usage
  3  server unreachable
  4  not logged in, or a bad, expired or revoked key (401)
  5  forbidden: missing scope, someone else's image, quota used up (403)
  6  file too large (413)
  7  rate limited (429; the wait is shown)
  8  not found (404)
  9  local file missing or unreadable

\b
Server and key: --server / --api-key, else ${URL_VARIABLE} / ${KEY_VARIABLE},
else the config file written by `chitram login`."""
# The API's `expires_in`: seconds, or a count of minutes, hours, days or weeks.
EXPIRES_PATTERN = re.compile(r"[1-9][0-9]{0,9}[mhdw]?")
DEFAULT_SERVER = "http://127.0.0.1:8000"

app = typer.Typer(
    name="chitram",
    help="Upload images to a Chitram server, list and delete them.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# Progress bars and messages go to stderr, so stdout carries only links or JSON (for pipes).
errors = Console(stderr=True, highlight=False)

ServerOption = Annotated[
    str | None,
    typer.Option("--server", metavar="URL", help=f"Server URL (default: ${URL_VARIABLE}, then the config file)."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--api-key", metavar="KEY", help=f"API key (default: ${KEY_VARIABLE}, then the config file)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def report(message: str) -> None:
    """One line on stderr, never wrapped or read as markup (server messages may contain brackets)."""
    errors.print(f"chitram: {message}", markup=False, soft_wrap=True)


def _logged_in(server: str | None, api_key: str | None) -> Credentials:
    credentials = resolve(server, api_key)
    if not credentials.server or not credentials.api_key:
        raise CliError(
            f"not logged in: run `chitram login` (or set {URL_VARIABLE} and {KEY_VARIABLE})", ExitCode.UNAUTHORIZED
        )
    return credentials


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def _version(show: bool) -> None:
    if show:
        typer.echo(f"chitram {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Upload images to a Chitram server, list and delete them."""


@app.command(epilog=EXIT_CODES)
def login(
    server: Annotated[
        str | None, typer.Option("--server", metavar="URL", help="Server URL; asked for when not given.")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="EMAIL", help="Account email; asked for when not given.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
    api_key: Annotated[
        str | None, typer.Option("--api-key", metavar="KEY", help="Store this existing API key instead of logging in.")
    ] = None,
) -> None:
    """Log in and store a new API key (scopes images:read, images:upload, images:delete) for later commands."""
    if password_stdin and not email and not api_key:
        raise typer.BadParameter("--password-stdin needs --email (stdin cannot answer both)", param_hint="--email")
    if not server:
        stored = resolve(None, None).server
        server = typer.prompt("Server URL", default=stored or DEFAULT_SERVER)
    base_url = normalise_server(server)
    if api_key:
        with ChitramClient(base_url, api_key) as client:
            account = client.me()  # a wrong key is refused now, not at the first upload
        described = "the given key"
    else:
        email = email or typer.prompt("Email")
        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else typer.prompt("Password", hide_input=True)
        api_key, described = _new_key(base_url, email, password)
        with ChitramClient(base_url, api_key) as client:
            account = client.me()
    path = save_config(Credentials(server=base_url, api_key=api_key))
    report(f"logged in to {base_url} as {account.get('email', '?')}; {described} saved in {path}")


def _new_key(base_url: str, email: str, password: str) -> tuple[str, str]:
    """A new API key made with a password login, and how to name it to the user (never the secret)."""
    name = f"chitram-cli on {socket.gethostname()}"
    with ChitramClient(base_url) as client:
        created = client.create_api_key(client.login(email, password), name)
    # The prefix is the key's public id (the web UI lists keys by it); the secret part stays unprinted.
    return str(created["key"]), f"a new API key {name!r} ({created.get('prefix', 'chk_')}…)"


def _upload_all(
    client: ChitramClient,
    paths: list[Path],
    *,
    visibility: str | None,
    expires: str | None,
    on_result: Callable[[Path, dict[str, Any] | CliError], None],
) -> None:
    # Bars only on a terminal: piped stderr would get a snapshot of every refresh.
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), DownloadColumn())
    with Progress(
        *columns, TransferSpeedColumn(), console=errors, disable=not errors.is_terminal, redirect_stdout=False
    ) as progress:
        for path in paths:
            task = progress.add_task(path.name, total=None)

            def on_sent(sent: int, total: int, task: Any = task) -> None:
                progress.update(task, completed=sent, total=total)

            try:
                if not path.exists():
                    raise CliError(f"{path}: no such file", ExitCode.LOCAL_FILE, code="LOCAL_FILE")
                if not path.is_file():
                    raise CliError(f"{path}: not a file", ExitCode.LOCAL_FILE, code="LOCAL_FILE")
                image = client.upload(path, visibility=visibility, expires_in=expires, on_sent=on_sent)
            except CliError as error:
                progress.remove_task(task)
                on_result(path, error)
                if error.exit_code == ExitCode.UNREACHABLE:
                    return  # the next files would fail the same way
            else:
                on_result(path, image)


def _check_expires(value: str | None) -> str | None:
    if value is not None and not EXPIRES_PATTERN.fullmatch(value):
        raise typer.BadParameter("give seconds or a number with m, h, d or w (e.g. 3600, 30m, 12h, 7d, 2w)")
    return value


@app.command(epilog=EXIT_CODES)
def upload(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Image files to upload.", show_default=False)],
    private: Annotated[bool, typer.Option("--private", help="Only you can see it (share with signed links).")] = False,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="DURATION",
            callback=_check_expires,
            help="Delete it after this long: 3600, 30m, 12h, 7d, 2w.",
        ),
    ] = None,
    json_output: JsonOption = False,
    server: ServerOption = None,
    api_key: KeyOption = None,
) -> None:
    """Upload files, each with a progress bar, and print their links."""
    credentials = _logged_in(server, api_key)
    base_url = str(credentials.server)
    results: list[dict[str, Any]] = []
    failures: list[CliError] = []

    def on_result(path: Path, outcome: dict[str, Any] | CliError) -> None:
        if isinstance(outcome, CliError):
            # A missing file's message names it already; an unreachable server is not about this file.
            about_file = outcome.exit_code not in {ExitCode.LOCAL_FILE, ExitCode.UNREACHABLE}
            report(f"{path}: {outcome.message}" if about_file else outcome.message)
            failures.append(outcome)
            results.append({"file": str(path), "error": {"code": outcome.code, "message": outcome.message}})
        else:
            results.append({"file": str(path), **with_absolute_links(base_url, outcome)})

    with ChitramClient(base_url, credentials.api_key) as client:
        try:
            _upload_all(
                client,
                files,
                visibility="private" if private else None,
                expires=expires,
                on_result=on_result,
            )
        finally:
            _print_uploads(results, json_output=json_output)
    if failures:
        if len(files) > 1 and failures[-1].exit_code != ExitCode.UNREACHABLE:
            report(f"{len(failures)} of {len(files)} files failed")
        raise typer.Exit(failures[0].exit_code)


def _print_uploads(results: list[dict[str, Any]], *, json_output: bool) -> None:
    if json_output:
        _print_json(results)
        return
    for result in results:
        if "error" in result:
            continue
        notes = [result["visibility"]] if result.get("visibility") == "private" else []
        if result.get("expires_at"):
            notes.append(f"expires {local_time(result['expires_at'])}")
        suffix = f" ({', '.join(notes)})" if notes else ""
        typer.echo(f"{Path(result['file']).name}{suffix}\n  file  {result['url']}\n  page  {result['page_url']}")


@app.command("ls", epilog=EXIT_CODES)
def list_images(
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=10_000, help="How many, newest first.")
    ] = 20,
    json_output: JsonOption = False,
    server: ServerOption = None,
    api_key: KeyOption = None,
) -> None:
    """List your images, newest first."""
    credentials = _logged_in(server, api_key)
    with ChitramClient(str(credentials.server), credentials.api_key) as client:
        images = client.list_images(limit)
    if json_output:
        _print_json([with_absolute_links(str(credentials.server), image) for image in images])
    elif not images:
        report("no images yet")
    else:
        # Piped output is not cut to 80 columns: a script reading the table wants whole ids and names.
        Console(width=None if sys.stdout.isatty() else 1000).print(image_table(images))


@app.command("rm", epilog=EXIT_CODES)
def remove(
    image_ids: Annotated[list[str], typer.Argument(metavar="ID", help="Ids of images to delete.")],
    server: ServerOption = None,
    api_key: KeyOption = None,
) -> None:
    """Delete images (and every file made from them)."""
    credentials = _logged_in(server, api_key)
    failures: list[CliError] = []
    with ChitramClient(str(credentials.server), credentials.api_key) as client:
        for image_id in image_ids:
            try:
                client.delete_image(quote(image_id, safe=""))
            except CliError as error:
                failures.append(error)
                if error.exit_code == ExitCode.UNREACHABLE:
                    report(error.message)
                    break
                report(f"{image_id}: {error.message}")
            else:
                typer.echo(f"deleted {image_id}")
    if failures:
        raise typer.Exit(failures[0].exit_code)


@app.command("open", epilog=EXIT_CODES)
def open_page(
    image_id: Annotated[str, typer.Argument(metavar="ID", help="Id of the image.")],
    server: ServerOption = None,
    api_key: KeyOption = None,
) -> None:
    """Open the image's page in the web browser."""
    credentials = resolve(server, api_key)
    if not credentials.server:
        raise CliError(f"no server: run `chitram login` (or set {URL_VARIABLE})", ExitCode.UNAUTHORIZED)
    with ChitramClient(credentials.server, credentials.api_key) as client:
        client.get_image(quote(image_id, safe=""))  # a mistyped id is reported here, not as a 404 page
    url = page_url(credentials.server, quote(image_id, safe=""))
    if not webbrowser.open(url):
        raise CliError(f"no web browser found; the page is {url}")
    typer.echo(url)


@contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except CliError as error:
        report(error.message)
        raise SystemExit(int(error.exit_code)) from None


def run() -> None:
    """The `chitram` script: the Typer app, with `CliError` turned into its line and exit code."""
    with _cli_errors():
        app()

"""Issue 18's layout: nginx balancing several `python -m app` processes, beside worker tiers, on shared engines.

The failure scenario (scale_out_scenario.py) and the bench's `scale` pass (scale_scenarios.py) both run
it. Every process is started through `Processes` (services.py): a process group of its own, loopback
only, a log in the work directory, its pgid recorded for run.sh's safety net. An API process is
`python -m app` with WEB_CONCURRENCY=1 (one process, the one a SIGKILL ends) on a port of its own,
which it takes again when started again; a worker tier is `python -m app.worker` with one job process,
its supervisor serving the tier's /metrics on a port of its own. Each start gets its own
PROMETHEUS_MULTIPROC_DIR, so a restarted process's /metrics counts what that start did.

The balancer (nginx; its upstream and proxy modules' documentation says what each directive does):
- `max_fails=1 fail_timeout=2s`: one failed attempt takes a server out of rotation for 2 s, after
  which a single request tries it again. nginx without the commercial build has no active health
  checks, so the passive ones have to react at the first failure.
- `proxy_next_upstream error timeout` (nginx's default, spelled out) and `proxy_next_upstream_tries 2`:
  a request that could not be delivered (connect refused, connection closed before an answer) goes
  to the other server. nginx passes a non-idempotent request (POST, PATCH, LOCK) on only if it was
  not yet sent: an upload meeting a dead server's refused port is retried, and one whose server dies
  while working on it is answered 502. The client then cannot know whether the upload was stored (it
  may have been committed a moment before the kill), and a retry is a second upload: the content is
  stored once (ADR 0014), but it gets a second record. GET and DELETE are retried even when sent; a
  DELETE that its first server carried out before dying is answered 404 by the second.
- http_502/http_503 are not in that list: the app's own 503 (upload slots full, storage down) is an
  answer to pass on, not a sign of a dead server, and retrying it would double the load it reports.
- `proxy_connect_timeout 1s`: loopback (or a LAN) connects in well under a millisecond; a server that
  does not accept within a second is treated as down rather than holding the request.
- Keep-alive connections to the servers (`keepalive`, HTTP/1.1, an empty Connection header): no new
  connection per request; an idle one a killed server leaves behind is closed when its FIN arrives.
- `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`: the app takes the last address that
  is not a trusted proxy (FORWARDED_ALLOW_IPS=127.0.0.1, the balancer's). The scenario's clients stand
  behind a trusted edge and name their own address; a balancer facing the internet sets `$remote_addr`.
- Request bodies are buffered (`proxy_request_buffering on`, the default): the whole upload is read
  before a server is chosen, so a refused connect is retried with its body, and a slow client holds no
  upload slot of the app.
"""

from __future__ import annotations

import getpass
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services import BACKEND_DIR, VENV_BIN, Processes, Service, free_port, http_ok, process_tree, wait_until

FAIL_TIMEOUT_SECONDS = 2
NEXT_UPSTREAM_TRIES = 2
CONNECT_TIMEOUT_SECONDS = 1
READ_TIMEOUT_SECONDS = 60
UPSTREAM_KEEPALIVE = 64
WORKER_STARTED = "worker started:"  # app.jobs.worker logs it once per job process, when it is about to run
# One line per request: when it ended, its status, the servers tried in turn and their answers.
ACCESS_LOG_FORMAT = '$msec $status $request_method "$upstream_addr" "$upstream_status" $request_time $request_uri'
ACCESS_LINE = re.compile(r'^(\S+) (\d{3}) (\S+) "([^"]*)" "([^"]*)" (\S+) (\S+)$')
# nginx separates the servers one request tried with ", " (and internal redirects with " : ").
UPSTREAM_SEPARATOR = re.compile(r"\s*[,:]\s+")
REQUESTS_COUNTER = re.compile(r"^chitram_http_requests_total\{(.*)\}[ \t]+(\S+)", re.MULTILINE)
JOBS_DONE = re.compile(r'^chitram_jobs_total\{(?=[^}]*kind="thumbnail")(?=[^}]*outcome="done")[^}]*\}[ \t]+(\S+)', re.M)
NOT_SERVED = ('route="/metrics"', 'route="/health"')  # the layout's own probes, not clients' requests


@dataclass
class Start:
    """One start of a member: its process group's leader, and when it was spawned and answered (monotonic)."""

    pid: int
    log: Path
    spawned_at: float
    ready_at: float = 0.0


@dataclass
class Member:
    """One API process or worker tier, across its restarts; `port` is where it listens (a tier: its /metrics)."""

    name: str
    kind: str  # "api" or "worker"
    port: int
    service: Service | None = None
    starts: list[Start] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class Kill:
    """A SIGKILL to a member's process group: what it ended and whether those processes are gone."""

    member: str
    kind: str
    pids: tuple[int, ...]  # the process tree at the kill
    at: float  # monotonic
    wall: float  # the same moment, Unix time (the balancer's log is in it)
    exit_status: int | None  # the group leader's, as Popen reports it: -9 for SIGKILL
    gone: bool


@dataclass(frozen=True)
class AccessLine:
    ended_at: float  # Unix time
    status: int
    method: str
    upstreams: tuple[str, ...]  # every server tried, in turn ("127.0.0.1:port")
    upstream_statuses: tuple[str, ...]
    uri: str


class ScaleOutLayout:
    """API processes and worker tiers sharing `env`'s engines, and nginx balancing the API processes."""

    def __init__(
        self,
        processes: Processes,
        env: Mapping[str, str],
        *,
        api_count: int,
        worker_count: int,
        access_log: bool = True,
    ) -> None:
        self.processes = processes
        self.env = dict(env)
        self.access_log = access_log
        self.apis = [Member(f"api-{number}", "api", free_port()) for number in range(1, api_count + 1)]
        self.workers = [Member(f"worker-{number}", "worker", free_port()) for number in range(1, worker_count + 1)]
        self.balancer: Service | None = None
        self.sites: dict[str, str] = {}  # site name -> the balancer's URL for it
        self.prefix = processes.workdir / "balancer"

    # -- starting --------------------------------------------------------------------------------

    def start(self, sites: Mapping[str, Sequence[Member]] | None = None) -> None:
        """Every member, started side by side (an import of the app takes seconds of CPU), then the balancer.

        `sites`: a balancer port for each named group of API processes (default: `all` of them).
        """
        members = [*self.apis, *self.workers]
        for member in members:
            self._spawn(member)
        for member in members:
            self._wait_ready(member)
        self.start_balancer(sites or {"all": self.apis})

    def restart(self, member: Member) -> Start:
        """Start a member again after a kill (an API process on the same port), once it is ready."""
        self._spawn(member)
        self._wait_ready(member)
        return member.starts[-1]

    def _spawn(self, member: Member) -> None:
        number = len(member.starts) + 1
        label = member.name if number == 1 else f"{member.name}-start{number}"
        metrics = self.processes.workdir / "metrics" / label
        metrics.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
        if member.kind == "api":
            env |= {"HOST": "127.0.0.1", "PORT": str(member.port), "WEB_CONCURRENCY": "1"}
            command = [str(VENV_BIN / "python"), "-m", "app"]
            port: int | None = member.port
        else:
            env |= {"WORKER_PROCESSES": "1", "WORKER_METRICS_PORT": str(member.port)}
            command = [str(VENV_BIN / "python"), "-m", "app.worker"]
            port = None
        spawned_at = time.monotonic()
        member.service = self.processes.spawn(label, command, env=env, cwd=BACKEND_DIR, port=port)
        member.starts.append(Start(member.service.pid, member.service.log, spawned_at))

    def _wait_ready(self, member: Member) -> None:
        service = member.service
        assert service is not None
        if member.kind == "api":
            wait_until(http_ok(member.base_url + "/health"), service.process, service.name, service.log)
        else:
            wait_until(
                lambda: WORKER_STARTED in service.log.read_text(errors="replace"),
                service.process,
                service.name,
                service.log,
            )
        member.starts[-1].ready_at = time.monotonic()

    def start_balancer(self, sites: Mapping[str, Sequence[Member]]) -> None:
        """nginx, one worker process, a port for each site, balancing round robin over the site's members."""
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in sites}
        conf = self.prefix / "nginx.conf"
        conf.write_text(self._config(sites, ports))
        executable = _nginx_executable()
        command = [executable, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(conf)]
        self.balancer = self.processes.spawn("balancer", command, env=os.environ, cwd=self.prefix, port=None)
        self.sites = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for url in self.sites.values():
            wait_until(http_ok(url + "/health"), self.balancer.process, "balancer", self.balancer.log)

    def _config(self, sites: Mapping[str, Sequence[Member]], ports: Mapping[str, int]) -> str:
        # Run as root, nginx would drop its worker to `nobody`, which cannot read the private workdir.
        user_line = f"user {getpass.getuser()};" if os.geteuid() == 0 else ""
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.prefix / 'tmp' / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        access = f"access_log {self.prefix / 'access.log'} balancer;" if self.access_log else "access_log off;"
        blocks = []
        for name, members in sites.items():
            servers = "\n".join(
                f"        server 127.0.0.1:{member.port} max_fails=1 fail_timeout={FAIL_TIMEOUT_SECONDS}s;"
                for member in members
            )
            blocks.append(
                f"""
    upstream chitram_{name} {{
{servers}
        keepalive {UPSTREAM_KEEPALIVE};
    }}
    server {{
        listen 127.0.0.1:{ports[name]};
        location / {{ proxy_pass http://chitram_{name}; }}
    }}"""
            )
        return f"""
{user_line}
worker_processes 1;
daemon off;
pid {self.prefix / "nginx.pid"};
error_log {self.prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    log_format balancer '{ACCESS_LOG_FORMAT}';
    {access}
{temp_paths}
    keepalive_requests 1000000;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_connect_timeout {CONNECT_TIMEOUT_SECONDS}s;
    proxy_send_timeout {READ_TIMEOUT_SECONDS}s;
    proxy_read_timeout {READ_TIMEOUT_SECONDS}s;
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries {NEXT_UPSTREAM_TRIES};
{"".join(blocks)}
}}
"""

    def stop(self) -> None:
        """The balancer first, then every member still running."""
        services = [self.balancer, *(member.service for member in [*self.apis, *self.workers])]
        for service in services:
            if service is not None:
                self.processes.stop(service)
        self.balancer = None
        for member in [*self.apis, *self.workers]:
            member.service = None

    # -- failures --------------------------------------------------------------------------------

    def kill(self, member: Member) -> Kill:
        """SIGKILL to the member's process group (an API process; a tier's supervisor, job process and
        metrics server), as when its host or container dies; returns once the leader is reaped."""
        service = member.service
        if service is None:
            raise RuntimeError(f"{member.name} is not running")
        tree = tuple(process_tree(service.pid))
        at, wall = time.monotonic(), time.time()
        os.killpg(service.pid, signal.SIGKILL)
        exit_status = service.process.wait(timeout=10)
        self.processes.started.remove(service)
        member.service = None
        return Kill(member.name, member.kind, tree, at, wall, exit_status, _all_gone(tree))

    # -- what the members did --------------------------------------------------------------------

    def requests_served(self, member: Member) -> int | None:
        """Requests this start of an API process answered (its own /metrics, the layout's probes left out)."""
        try:
            text = httpx.get(member.base_url + "/metrics", timeout=10).text
        except httpx.HTTPError:
            return None
        return round(
            sum(
                float(value)
                for labels, value in REQUESTS_COUNTER.findall(text)
                if not any(label in labels for label in NOT_SERVED)
            )
        )

    def thumbnails_made(self, member: Member) -> int | None:
        """Thumbnail jobs this start of a worker tier finished (its supervisor's /metrics)."""
        try:
            text = httpx.get(member.base_url + "/metrics", timeout=10).text
        except httpx.HTTPError:
            return None
        return round(sum(float(value) for value in JOBS_DONE.findall(text)))

    def access_lines(self) -> list[AccessLine]:
        """The balancer's access log so far (empty without one)."""
        path = self.prefix / "access.log"
        if not path.exists():
            return []
        lines = []
        for raw in path.read_text(errors="replace").splitlines():
            match = ACCESS_LINE.match(raw)
            if match is None:
                continue
            ended, status, method, upstreams, statuses, _seconds, uri = match.groups()
            lines.append(
                AccessLine(
                    float(ended),
                    int(status),
                    method,
                    tuple(part for part in UPSTREAM_SEPARATOR.split(upstreams) if part),
                    tuple(part for part in UPSTREAM_SEPARATOR.split(statuses) if part),
                    uri,
                )
            )
        return lines

    def pids(self, members: Sequence[Member]) -> list[int]:
        """Every live process of these members (each API process; a tier's supervisor and children)."""
        return [pid for member in members if member.service is not None for pid in process_tree(member.service.pid)]


def _nginx_executable() -> str:
    for directory in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin"]:
        candidate = Path(directory) / "nginx"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("nginx not found (in PATH or /usr/sbin): run scripts/install-system-deps.sh")


def _gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie its parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _all_gone(pids: Sequence[int], limit_seconds: float = 5.0) -> bool:
    """Whether every process of a killed tree is gone (SIGKILL is delivered at once, but not noticed at once)."""
    deadline = time.monotonic() + limit_seconds
    while True:
        if all(_gone(pid) for pid in pids):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)

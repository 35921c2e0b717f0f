"""The layout of HERMES_HOME, and the only module that joins paths inside it.

Every other module asks this one for a path (``home.config_path()``,
``home.sessions_dir()``...) so the layout is written down exactly once. The
NixOS module, the deployment steps, the gateway and the tests all rely on it.

Directories are created on first need with mode 0700 (they hold transcripts,
memories and tokens); files that hold secrets are created 0600 by the writers
in :mod:`hermes_agent.fsutil`.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from hermes_agent.errors import HermesError

ENV_VAR = "HERMES_HOME"
DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600

# File and directory names, relative to HERMES_HOME.
CONFIG_FILE = "config.yaml"
ENV_FILE = ".env"
AUTH_FILE = "auth.json"
MANAGED_MARKER = ".managed"
GATEWAY_PID_FILE = "gateway.pid"
#: Held (flock) for every read-modify-write of a HERMES_HOME file (see home_lock.py).
HOME_LOCK_FILE = "home.lock"
STATE_DB = "state.db"
SESSIONS_DIR = "sessions"
MEMORIES_DIR = "memories"
SKILLS_DIR = "skills"
CRON_DIR = "cron"
LOGS_DIR = "logs"
MCP_TOKENS_DIR = "mcp-tokens"
#: Shadow git repositories of workspaces: copies of their files, credentials included.
CHECKPOINTS_DIR = "checkpoints"
#: Images shown to the model, content-addressed (``<sha256>.<ext>``): state.db keeps
#: only the reference, never the bytes.
IMAGES_DIR = "images"
CHAT_HISTORY_FILE = "chat_history"
APPROVALS_LOG = "approvals.jsonl"  # inside LOGS_DIR: one JSON line per approval decision
GATEWAY_LOG = "gateway.log"  # inside LOGS_DIR: what `hermes gateway run` did
GATEWAY_SERVICE_LOG = "gateway.service.log"  # inside LOGS_DIR: the launchd agent's stdout/stderr
#: What the running gateway reports about itself (pid, platforms connected), for `hermes status`.
GATEWAY_STATUS_FILE = "gateway.status.json"
ACP_LOG = "acp.log"  # inside LOGS_DIR: what `hermes-acp` did
MCP_LOGS_DIR = "mcp"  # inside LOGS_DIR: one ``NAME.log`` per MCP server (its stderr)
MEMORY_FILE = "MEMORY.md"  # inside MEMORIES_DIR: the agent's own notes
USER_PROFILE_FILE = "USER.md"  # inside MEMORIES_DIR: what the agent knows about the user
SKILL_FILE = "SKILL.md"  # inside each skill's directory
#: Which config keys, MCP servers and documents the NixOS deployment set (hermes deploy apply).
NIX_STATE_FILE = ".nix-managed-keys.json"
#: Digests of the workspace documents (SOUL.md, USER.md) the user let into prompts.
TRUSTED_DOCUMENTS_FILE = "trusted-documents.json"

#: Every directory of the layout, in the order ``ensure_layout`` creates them.
LAYOUT_DIRS = (SESSIONS_DIR, MEMORIES_DIR, SKILLS_DIR, CRON_DIR, LOGS_DIR, MCP_TOKENS_DIR)


def hermes_home() -> Path:
    """Return HERMES_HOME: ``$HERMES_HOME`` if set and non-empty, else ``~/.hermes``.

    The path is made absolute (``~`` expanded) but not resolved, so a symlinked
    home keeps the name the user gave it in messages.
    """
    raw = os.environ.get(ENV_VAR, "")
    if raw.startswith("/"):
        return _absolute(raw)  # The usual case, asked for on every tool call: cached.
    path = Path(raw).expanduser() if raw else Path.home() / ".hermes"
    return path if path.is_absolute() else Path.cwd() / path


@functools.lru_cache(maxsize=32)
def _absolute(raw: str) -> Path:
    return Path(raw)


def where() -> tuple[str, str, str]:
    """What decides where HERMES_HOME is: ``$HERMES_HOME``, and ``$HOME`` and the working
    directory only when they count (it is unset, or not absolute).

    A cache key for a path inside the home, checked on every tool call: one environment
    lookup in the usual case, where building the path again costs several microseconds.
    """
    raw = os.environ.get(ENV_VAR, "")
    if raw.startswith("/"):
        return raw, "", ""
    relative = bool(raw) and not raw.startswith("~")
    return raw, os.environ.get("HOME", ""), os.getcwd() if relative else ""


@functools.lru_cache(maxsize=256)
def _joined(root: Path, name: str) -> Path:
    return root / name


def path(name: str, root: Path | None = None) -> Path:
    """Return ``HERMES_HOME/name`` for one of the layout's names.

    ``root`` stands in for HERMES_HOME when a command works on a home given
    explicitly (`hermes deploy apply --home DIR`). Joined once per home and name
    (paths are immutable): the audit log, the MCP pins and the secret files are
    looked up on every tool call, and pathlib's joining costs microseconds each time.
    """
    return _joined(root or hermes_home(), name)


def config_path() -> Path:
    return path(CONFIG_FILE)


def trusted_documents_path() -> Path:
    return path(TRUSTED_DOCUMENTS_FILE)


def env_path() -> Path:
    return path(ENV_FILE)


def auth_path() -> Path:
    return path(AUTH_FILE)


def managed_marker_path() -> Path:
    return path(MANAGED_MARKER)


def gateway_pid_path() -> Path:
    return path(GATEWAY_PID_FILE)


def gateway_lock_path() -> Path:
    """Held (flock) by the running gateway: two gateways never share a HERMES_HOME."""
    return path("gateway.lock")


def home_lock_path(root: Path | None = None) -> Path:
    """The lock every writer of a HERMES_HOME file holds (:mod:`hermes_agent.home_lock`)."""
    return path(HOME_LOCK_FILE, root)


def state_db_path() -> Path:
    return path(STATE_DB)


def platform_state_path(name: str) -> Path:
    """What gateway platform ``name`` keeps between runs (``platforms/NAME.json``).

    A sync position, a device id: never a secret (secrets stay in ``.env``).
    ``name`` is a platform's config name, never a path.
    """
    return path("platforms") / f"{name}.json"


def chat_history_path() -> Path:
    """Lines typed at the `hermes chat` prompt (for the up-arrow); kept 0600."""
    return path(CHAT_HISTORY_FILE)


def sessions_dir() -> Path:
    return path(SESSIONS_DIR)


def memories_dir() -> Path:
    return path(MEMORIES_DIR)


def memory_file() -> Path:
    """The agent's notes (``memories/MEMORY.md``), shown to it at session start."""
    return memories_dir() / MEMORY_FILE


def user_profile_file() -> Path:
    """The agent's profile of the user (``memories/USER.md``), shown at session start."""
    return memories_dir() / USER_PROFILE_FILE


def skills_dir() -> Path:
    return path(SKILLS_DIR)


def user_skill_dir(name: str) -> Path:
    """The directory of the user skill ``name`` (a validated skill name, never a path)."""
    return skills_dir() / name


def cron_dir() -> Path:
    """Scheduled jobs: one ``ID.json`` per job (0600), written atomically."""
    return path(CRON_DIR)


def cron_job_path(job_id: str) -> Path:
    """The file of the scheduled job ``job_id`` (a validated job id, never a path)."""
    return cron_dir() / f"{job_id}.json"


def cron_output_dir(job_id: str | None = None) -> Path:
    """``cron/output``, or the folder of one job's results (``cron/output/ID``)."""
    base = cron_dir() / "output"
    return base if job_id is None else base / job_id


def cron_run_lock_path(job_id: str) -> Path:
    """Held (flock) while the job runs: one job never runs twice at the same time."""
    return cron_dir() / ".running" / f"{job_id}.lock"


def logs_dir() -> Path:
    return path(LOGS_DIR)


def approvals_log_path() -> Path:
    """The audit log of command approvals (``logs/approvals.jsonl``), kept 0600."""
    return logs_dir() / APPROVALS_LOG


def gateway_log_path() -> Path:
    """The gateway's log (``logs/gateway.log``); every line passes redaction."""
    return logs_dir() / GATEWAY_LOG


def gateway_service_log_path() -> Path:
    """stdout/stderr of the gateway run by launchd (macOS has no journal for user agents)."""
    return logs_dir() / GATEWAY_SERVICE_LOG


def mcp_pins_path() -> Path:
    """Digests of the MCP tool definitions in use (``mcp-pins.json``, 0600).

    A tool whose definition changes after its first use is held until the
    user approves the change (see :mod:`hermes_agent.mcp.pins`).
    """
    return path("mcp-pins.json")


def gateway_status_path() -> Path:
    """Written (atomically) by the running gateway: its pid and each platform's connection."""
    return path(GATEWAY_STATUS_FILE)


def acp_log_path() -> Path:
    """The log of `hermes-acp` (``logs/acp.log``); every line passes redaction."""
    return logs_dir() / ACP_LOG


def mcp_logs_dir() -> Path:
    """``logs/mcp``: the stderr of each MCP server, one file per server."""
    return logs_dir() / MCP_LOGS_DIR


def mcp_log_path(name: str) -> Path:
    """The log of MCP server ``name`` (``logs/mcp/NAME.log``), the name checked strictly.

    ``name`` comes from config.yaml or a command line (`hermes logs mcp NAME`): the
    same rule as for its token files, so it never leaves ``logs/mcp/``.
    """
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name) or ".." in name:
        raise HermesError(f"not a valid MCP server name: {name[:80]!r}")
    return mcp_logs_dir() / f"{name}.log"


def mcp_tokens_dir(root: Path | None = None) -> Path:
    return path(MCP_TOKENS_DIR, root)


def _mcp_server_file(name: str, suffix: str, root: Path | None) -> Path:
    import re

    # The name comes from config.yaml or the command line: never let it leave mcp-tokens/.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name) or ".." in name:
        raise HermesError(f"not a valid MCP server name for a token file: {name[:80]!r}")
    return mcp_tokens_dir(root) / f"{name}{suffix}"


def mcp_token_path(name: str, root: Path | None = None) -> Path:
    """OAuth tokens of MCP server ``name`` (``mcp-tokens/NAME.json``, 0600), keyed by issuer."""
    return _mcp_server_file(name, ".json", root)


def mcp_client_path(name: str, root: Path | None = None) -> Path:
    """OAuth client registration of MCP server ``name`` (``mcp-tokens/NAME.client.json``)."""
    return _mcp_server_file(name, ".client.json", root)


def mcp_refresh_lock_path(name: str, root: Path | None = None) -> Path:
    """Held (flock) while one process refreshes ``name``'s token, so others wait and reuse it."""
    return _mcp_server_file(name, ".lock", root)


def images_dir() -> Path:
    return path(IMAGES_DIR)


def image_path(name: str) -> Path:
    """The stored image ``name`` (``<sha256 hex>.<png|jpeg|gif|webp>``), checked strictly.

    The name comes from state.db or the gateway's inbox, which an attacker may have
    shaped: only a digest and a known extension are accepted, so it never leaves
    ``images/``.
    """
    import re

    if not re.fullmatch(r"[0-9a-f]{64}\.(?:png|jpeg|gif|webp)", name):
        raise HermesError(f"not a stored image name: {name[:80]!r}")
    return images_dir() / name


def checkpoints_dir() -> Path:
    """Shadow git repositories of workspaces (``checkpoints/``), one per workspace."""
    return path(CHECKPOINTS_DIR)


def checkpoint_repo(key: str) -> Path:
    """The shadow repository of one workspace; ``key`` is a hash of its path, never a path."""
    return checkpoints_dir() / key


def ensure_dir(directory: Path) -> Path:
    """Create ``directory`` (and missing parents) with mode 0700 on first need.

    An existing directory keeps its mode: the NixOS module, for example, makes
    the state directory 0750 on purpose. Failure names the path, because an
    unwritable HERMES_HOME is a configuration problem the user must fix.
    """
    if directory.is_dir():
        return directory
    missing = [directory]
    while not missing[-1].parent.exists() and missing[-1].parent != missing[-1]:
        missing.append(missing[-1].parent)
    try:
        # One by one: mkdir(parents=True) would give the parents the umask's mode.
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue  # Created meanwhile by someone else: keep their mode.
            path.chmod(DIR_MODE)  # An unusual umask may have removed owner bits.
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise HermesError(
            f"cannot create directory {directory}: {reason} (set {ENV_VAR} to a writable location)"
        ) from None
    return directory


def ensure_home(root: Path | None = None) -> Path:
    """Create HERMES_HOME (or ``root``) itself (0700) and return it."""
    return ensure_dir(root or hermes_home())


def ensure_layout(root: Path | None = None) -> Path:
    """Create HERMES_HOME (or ``root``) and every directory of the layout; return it."""
    home = ensure_home(root)
    for name in LAYOUT_DIRS:
        ensure_dir(home / name)
    return home

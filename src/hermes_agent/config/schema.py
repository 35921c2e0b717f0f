"""Every configuration key: its default, its type and what it means.

``SETTINGS`` is the single source: ``DEFAULT_CONFIG`` is built from it, `hermes
config set` and `hermes config check` validate against it, the README's
configuration reference is generated from it (``scripts/gen_config_docs.py``)
and the Nix config-drift check compares its keys. A key belongs here only when
some part of hermes reads it.

Kinds: ``str``, ``int``, ``number`` (int or float), ``bool``, ``bool-or-auto``
(true, false or the word auto), ``list[str]``, ``list[id]`` (strings or integers:
platform ids, which YAML may read as numbers), ``dict`` (an open mapping whose
entries a later part validates); a trailing ``?`` allows ``null``.
"""

from __future__ import annotations

import copy
from typing import Any

from hermes_agent.providers.catalog import DEFAULT_PROVIDER, PROVIDERS


class Setting:
    """One configuration key (dotted path) with its default and meaning."""

    __slots__ = ("choices", "default", "doc", "interpolate", "key", "kind", "maximum", "minimum")

    def __init__(
        self,
        key: str,
        default: Any,
        kind: str,
        doc: str,
        *,
        choices: tuple[str, ...] = (),
        minimum: float | None = None,
        maximum: float | None = None,
        interpolate: bool = False,
    ) -> None:
        self.key = key
        self.default = default
        self.kind = kind
        self.doc = doc
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        #: ``${VAR}`` in the value is replaced from the environment when loaded.
        self.interpolate = interpolate


def platform_settings(name: str, label: str) -> tuple[Setting, ...]:
    """The access-control keys every chat platform has, under gateway.platforms.<name>."""
    prefix = f"gateway.platforms.{name}"
    return (
        Setting(
            f"{prefix}.allowed_users",
            [],
            "list[id]",
            f"{label} user ids allowed to talk to the agent. Empty allows nobody (new users "
            "get a pairing code instead, see `gateway.pairing`), never everybody.",
        ),
        Setting(
            f"{prefix}.allowed_chats",
            [],
            "list[id]",
            f"{label} chats (rooms, channels, groups) in which every member may talk to "
            "the agent, in addition to `allowed_users`.",
        ),
    )


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "model.provider",
        DEFAULT_PROVIDER,
        "str",
        "Who serves the model: `openrouter`, `anthropic`, `openai`, or `custom` "
        "(any OpenAI-compatible endpoint named by `model.base_url`).",
        choices=tuple(PROVIDERS),
    ),
    Setting(
        "model.default",
        PROVIDERS[DEFAULT_PROVIDER].default_model,
        "str",
        "Model id sent to the provider (OpenRouter ids look like `anthropic/claude-sonnet-4`).",
    ),
    Setting(
        "model.base_url",
        "",
        "str",
        "Endpoint of the API. Empty: the provider's own (OpenRouter: "
        "`https://openrouter.ai/api/v1`). `${VAR}` is replaced from the environment.",
        interpolate=True,
    ),
    Setting(
        "model.api_key_env",
        "",
        "str",
        "Name of the environment variable (or `.env` entry) holding the API key. Empty: the "
        "provider's usual one (`OPENROUTER_API_KEY`, `ANTHROPIC_API_KEY`, `OPENAI_API_KEY`).",
    ),
    Setting(
        "model.max_tokens",
        8192,
        "int",
        "Most tokens the model may write in one reply.",
        minimum=1,
    ),
    Setting(
        "model.context_length",
        None,
        "int?",
        "The model's context window in tokens, for compression. Empty: known models' own "
        "size, else 128000.",
        minimum=1024,
    ),
    Setting(
        "model.vision",
        "auto",
        "bool-or-auto",
        "Whether the model accepts images (`--image`, `/image`, photos from chat platforms, "
        "`read_file` on an image): `auto` (known vision models: Claude 3 and later, GPT-4o, "
        "GPT-4.1, Gemini...), `true` or `false`.",
    ),
    Setting(
        "model.timeout",
        300,
        "number",
        "Seconds to wait for the provider before the request counts as failed (and is retried).",
        minimum=1,
    ),
    Setting(
        "toolsets",
        ["all"],
        "list[str]",
        "Toolsets the agent may use (`terminal`, `file`, `web`, `memory`, `skills`, `todo`, "
        "`clarify`, `delegate`, `session_search`, `cron`, and `mcp` for the MCP servers' "
        "tools; `hermes tools` lists them); `all` is every one.",
    ),
    Setting(
        "max_turns",
        90,
        "int",
        "Most model calls the agent makes for one message before it stops and says so.",
        minimum=1,
    ),
    Setting(
        "agent.max_turns",
        None,
        "int?",
        "Overrides `max_turns` when set (the NixOS module's historical spelling).",
        minimum=1,
    ),
    Setting(
        "agent.verbose",
        False,
        "bool",
        "Show tool arguments and full tool results while the agent works.",
    ),
    Setting(
        "terminal.backend",
        "local",
        "str",
        "Where the terminal tool runs commands: `local`, `ssh` or `docker`.",
        choices=("local", "ssh", "docker"),
    ),
    Setting(
        "terminal.cwd",
        "",
        "str",
        "The workspace: working directory of the terminal and file tools. Empty: the "
        "directory hermes was started in. `~` and `${VAR}` are expanded.",
        interpolate=True,
    ),
    Setting(
        "terminal.timeout",
        180,
        "int",
        "Seconds a foreground command may run before it is stopped.",
        minimum=1,
    ),
    # --- terminal backends and command approvals (tools/terminal.py, safety/gate.py) ---
    Setting(
        "terminal.max_output_chars",
        20000,
        "int",
        "Most characters of a command's output the agent sees; longer output keeps its start "
        "and its end, with a note of what was left out.",
        minimum=1000,
    ),
    Setting(
        "terminal.ssh.host",
        "",
        "str",
        "Host the `ssh` backend runs commands on (a name from `~/.ssh/config` works).",
    ),
    Setting("terminal.ssh.user", "", "str", "User for the `ssh` backend. Empty: ssh's default."),
    Setting(
        "terminal.ssh.port", 22, "int", "Port for the `ssh` backend.", minimum=1, maximum=65535
    ),
    Setting(
        "terminal.ssh.key_file",
        "",
        "str",
        "Private key for the `ssh` backend (no passphrase, or loaded in an agent). Empty: "
        "ssh's defaults. `~` is expanded.",
    ),
    Setting(
        "terminal.ssh.known_hosts_file",
        "",
        "str",
        "known_hosts file for the `ssh` backend. Empty: ssh's default. A new host is "
        "remembered on first contact; a changed host key is refused.",
    ),
    Setting(
        "terminal.ssh.cwd",
        "",
        "str",
        "Directory on the remote host where commands start. Empty: the remote user's home.",
    ),
    Setting(
        "terminal.docker.image",
        "python:3.11-slim",
        "str",
        "Image the `docker` backend runs each command in (`docker run --rm`, the workspace "
        "mounted at /workspace). Needs bash in the image.",
    ),
    Setting(
        "terminal.docker.container",
        "",
        "str",
        "A running container the `docker` backend runs commands in with `docker exec` "
        "instead of a fresh one per command.",
    ),
    Setting(
        "approvals.mode",
        "manual",
        "str",
        "How commands the agent runs are approved: `manual` asks you for every command that "
        "is not plainly safe; `smart` asks too, except for commands matching `approvals.allow`; "
        "`off` runs all but the refused ones (fork bombs, `rm -rf /`, writing to disks, "
        "changing hermes' own approval settings or `.env`, which are never run). The agent "
        "cannot change this setting.",
        choices=("manual", "smart", "off"),
    ),
    Setting(
        "approvals.allow",
        [],
        "list[str]",
        "In `smart` mode, commands that run without asking: a command name, optionally with "
        "words that must follow in order (`git push`, `npm install`, `docker rm`). Never "
        "covers refused commands or access to hermes' own secrets.",
    ),
    # --- kernel confinement of the agent's commands (safety/sandbox.py) ---
    Setting(
        "sandbox.mode",
        "enforce",
        "str",
        "`enforce`: every command the agent runs is confined by the kernel (Landlock, or "
        "bubblewrap): it can write only the workspace, its temp directory and "
        "`sandbox.writable`, and cannot read hermes' secrets. `off`: commands run unconfined "
        "(your choice; the agent cannot change it). Where the kernel offers no sandbox, every "
        "command that is not read-only asks first, whatever `approvals.mode` says.",
        choices=("enforce", "off"),
    ),
    Setting(
        "sandbox.backend",
        "auto",
        "str",
        "`auto` (Landlock where the kernel has it, else bubblewrap), `landlock` or "
        "`bubblewrap` (needs user namespaces, which the NixOS unit forbids).",
        choices=("auto", "landlock", "bubblewrap"),
    ),
    Setting(
        "sandbox.writable",
        [],
        "list[str]",
        "More directories the agent's commands may write (`~/.cache`, `/tmp`, another "
        "project). hermes' own home, code and your shell start-up files stay read-only even "
        "inside them.",
    ),
    Setting(
        "sandbox.network",
        True,
        "bool",
        "Whether the agent's commands may use TCP (`false` needs Landlock ABI 4, Linux 6.7+, "
        "or bubblewrap). Web tools run inside hermes and are not affected.",
    ),
    Setting(
        "sandbox.unix_sockets",
        False,
        "bool",
        "Whether the agent's commands may connect to Unix sockets outside their writable "
        "places. Off by default: through your tmux or screen server, the D-Bus session bus "
        "(`systemd-run --user`), the Docker daemon or ssh-agent a command could run "
        "anything outside the sandbox. Where the kernel cannot tell sockets apart (Landlock "
        "before ABI 9) no new Unix socket can be made at all (pipes and `socketpair` work).",
    ),
    Setting(
        "sandbox.pass_env",
        [],
        "list[str]",
        "Environment variables with secret-looking names (`*_TOKEN`, `*_API_KEY`...) that "
        "the agent's commands still receive (`GITHUB_TOKEN` for `gh`). Names from hermes' own "
        "`.env` are never passed.",
    ),
    # --- file and web tools (tools/files.py, tools/web.py, tools/guard.py) ---
    Setting(
        "files.allow_secret_paths",
        [],
        "list[str]",
        "Paths the credential guard lets the agent's file tools read and write although they "
        "hold secrets (`~/.ssh/id_ed25519`, `~/.aws/credentials`, `*.pem`...). A directory "
        "allows everything under it; `~` and `*` globs work. hermes' own secrets (`.env`, "
        "`auth.json`, `mcp-tokens/`) and writes to its configuration stay refused.",
    ),
    Setting(
        "web.search_backend",
        "auto",
        "str",
        "Search engine of the `web_search` tool: `searxng` (`web.searxng_url`), `brave` "
        "(`BRAVE_API_KEY`), `tavily` (`TAVILY_API_KEY`), or `auto`: the first of these that "
        "is configured.",
        choices=("auto", "searxng", "brave", "tavily"),
    ),
    Setting(
        "web.searxng_url",
        "",
        "str",
        "Base URL of a SearXNG instance with the JSON format enabled, e.g. "
        "`http://127.0.0.1:8888`. `${VAR}` is replaced from the environment.",
        interpolate=True,
    ),
    Setting(
        "web.brave_url",
        "https://api.search.brave.com/res/v1/web/search",
        "str",
        "Endpoint of the Brave Search web search API.",
    ),
    Setting(
        "web.tavily_url",
        "https://api.tavily.com/search",
        "str",
        "Endpoint of the Tavily search API.",
    ),
    Setting(
        "web.timeout",
        20,
        "number",
        "Seconds `web_fetch` and `web_search` wait for a server before giving up.",
        minimum=1,
    ),
    Setting(
        "web.max_bytes",
        5_000_000,
        "int",
        "Most bytes `web_fetch` downloads from one URL; a longer page is cut there.",
        minimum=10_000,
    ),
    Setting(
        "checkpoints.enabled",
        True,
        "bool",
        "Snapshot the workspace (in a shadow git repository under HERMES_HOME/checkpoints) "
        "before the agent's first change in each turn, so `/rollback` and `hermes "
        "checkpoints restore` can undo it.",
    ),
    Setting(
        "checkpoints.max_file_mb",
        10,
        "number",
        "Files larger than this many megabytes are left out of checkpoints (with a note).",
        minimum=0,
    ),
    Setting(
        "checkpoints.max_total_mb",
        500,
        "number",
        "A checkpoint whose new content exceeds this many megabytes is skipped (with a note).",
        minimum=0,
    ),
    Setting(
        "checkpoints.max_files",
        50000,
        "int",
        "Workspaces with more files than this (not counting ignored ones) get no checkpoints.",
        minimum=1,
    ),
    Setting(
        "checkpoints.keep",
        50,
        "int",
        "How many checkpoints to keep per workspace; older ones are pruned.",
        minimum=1,
    ),
    Setting(
        "checkpoints.max_age_days",
        30,
        "number",
        "Checkpoints older than this many days are pruned (0: no age limit; the newest "
        "always stays).",
        minimum=0,
    ),
    Setting(
        "compression.enabled",
        True,
        "bool",
        "Summarise the middle of a long conversation instead of failing at the context limit.",
    ),
    Setting(
        "compression.threshold",
        0.85,
        "number",
        "Fraction of the model's context window at which compression starts.",
        minimum=0.1,
        maximum=1.0,
    ),
    Setting(
        "compression.summary_model",
        "",
        "str",
        "Model that writes the summary. Empty: the main model.",
    ),
    Setting(
        "memory.memory_enabled",
        True,
        "bool",
        "Keep agent notes in `memories/MEMORY.md` and show them to the agent at session start.",
    ),
    Setting(
        "memory.user_profile_enabled",
        True,
        "bool",
        "Keep a profile of the user in `memories/USER.md` and show it at session start.",
    ),
    Setting(
        "display.compact",
        False,
        "bool",
        "Terse terminal output: one line per tool call, no banners.",
    ),
    Setting(
        "display.personality",
        "",
        "str",
        "Name of a personality added to the system prompt. Empty: none. Bundled: `concise`, "
        "`teacher`, `friendly`, `technical`; more in `personalities`. `/personality NAME` "
        "switches one session.",
    ),
    Setting(
        "personalities",
        {},
        "dict",
        "Your own personalities: name to the style text added to the system prompt (a name "
        "here replaces a bundled one of the same name).",
    ),
    Setting(
        "skills.disabled",
        [],
        "list[str]",
        "Names of skills the agent must not see or load.",
    ),
    # --- memory and skills (limits and write approval) ---
    Setting(
        "memory.memory_char_limit",
        2200,
        "int",
        "Most characters `memories/MEMORY.md` may hold; a write over it is refused and the "
        "agent consolidates its notes.",
        minimum=100,
    ),
    Setting(
        "memory.user_char_limit",
        1375,
        "int",
        "Most characters `memories/USER.md` may hold (same rule).",
        minimum=100,
    ),
    Setting(
        "memory.write_approval",
        True,
        "bool",
        "In a turn that read untrusted content (web pages, files), ask before the agent writes "
        "memory or skills; refused when nobody can answer.",
    ),
    Setting(
        "skills.write_approval",
        True,
        "bool",
        "Ask before every skill the agent creates, changes or deletes; refused when nobody can "
        "answer. Off: only turns that read untrusted content ask (`memory.write_approval`).",
    ),
    Setting(
        "streaming.enabled",
        True,
        "bool",
        "Stream the model's answer as it is written instead of waiting for the whole reply.",
    ),
    Setting(
        "delegate.max_depth",
        2,
        "int",
        "How deep sub-agents may nest: 1 lets the agent delegate but not its sub-agents.",
        minimum=0,
    ),
    Setting(
        "redaction.enabled",
        True,
        "bool",
        "Replace secrets (values from `.env`, `auth.json`, MCP tokens, in any usual spelling, "
        "and well-known key shapes) with [REDACTED] in tool results and errors, state.db, logs, "
        "exports, gateway replies and the terminal. Off is for debugging a provider; requests "
        "that would send a secret to a host are refused either way.",
    ),
    Setting(
        "fallback_providers",
        [],
        "list[dict]",
        "Providers tried in order when the model fails after its retries, or answers with an "
        "error another one may not have (5xx, 429, overloaded, model gone). Each entry: "
        "`provider`, `model`, optional `base_url` and `api_key_env`. Auth errors stop the "
        "turn instead.",
    ),
    Setting(
        "mcp_servers",
        {},
        "dict",
        "MCP servers by name: `command`/`args`/`env` for stdio, or `url`/`headers` for HTTP "
        "(`transport: sse` for legacy SSE), `auth: oauth` with optional `oauth` settings "
        "(`client_id`, `client_secret`, `scope`, `callback_port`, `grant`...), `enabled`, "
        "`required`, `timeout` "
        "(idle seconds per call, progress extends it; default 120), `max_call_time`, "
        "`connect_timeout` (60), `tools.include`/`tools.exclude`, `approval` and "
        "`tool_approval` (`auto`, `ask`, `deny`), `sampling.enabled|model|max_tokens_cap|"
        "timeout|max_rpm`, `sandbox.writable`/`sandbox.network`. `${VAR}` is replaced in "
        "`env`, `url`, `headers` and `oauth` from `.env` and the environment when connecting. See "
        '"MCP servers" above.',
    ),
    Setting(
        "mcp.connect_wait",
        3.0,
        "number",
        "Seconds the first turn of a session waits for MCP servers still connecting; then it "
        "goes on, and their tools appear once they are ready (a `required` server is waited "
        "for up to its `connect_timeout`).",
        minimum=0,
    ),
    Setting(
        "mcp.max_tools",
        128,
        "int",
        "Most MCP tools offered to the model at once (all servers together): more would flood "
        "its context. Those left out are named by the `mcp_servers` tool and `/mcp`; choose "
        "with `mcp_servers.NAME.tools.include`.",
        minimum=1,
    ),
    # --- editors over the Agent Client Protocol (`hermes-acp`, acp/) ---
    Setting(
        "acp.client_terminal",
        False,
        "bool",
        "Run the agent's commands in the editor's own terminal (ACP `terminal/*`) when the "
        "editor offers one. Off: they run in hermes' confined terminal and their output is "
        "shown in the editor. The editor's terminal is outside hermes' kernel sandbox; the "
        "approval gate still decides every command.",
    ),
    Setting(
        "acp.permission_timeout",
        300,
        "number",
        "Seconds an approval asked in the editor (`session/request_permission`) may wait for "
        "an answer; no answer in time is a no.",
        minimum=1,
    ),
    # --- scheduled jobs (`hermes cron`, run by the gateway) ---
    Setting(
        "cron.enabled",
        True,
        "bool",
        "Run the scheduled jobs of `HERMES_HOME/cron` while `hermes gateway run` runs. Off: "
        "jobs are kept but only run by hand (`hermes cron run ID`).",
    ),
    Setting(
        "cron.timezone",
        "",
        "str",
        "Time zone in which cron expressions and times without an offset are read, as an "
        "IANA name (`Europe/Berlin`). Empty: the system's local time (`TZ`, else "
        "/etc/localtime).",
    ),
    Setting(
        "cron.max_parallel",
        2,
        "int",
        "How many scheduled jobs may run at the same time; others wait for a free slot.",
        minimum=1,
    ),
    Setting(
        "cron.default_missed",
        "skip",
        "str",
        "What a recurring job does about runs missed while the gateway was down: `skip` "
        "them and wait for the next one, or `run_once` now for all of them. One-off jobs "
        "default to `run_once`. `hermes cron add --missed` sets it per job.",
        choices=("skip", "run_once"),
    ),
    Setting(
        "cron.missed_grace",
        300,
        "number",
        "Seconds a run may start late (after a restart, a suspend) and still count as on "
        "time; a run later than that follows the job's missed-run policy.",
        minimum=0,
    ),
    # --- gateway (`hermes gateway run`) ---
    Setting(
        "gateway.max_concurrent_sessions",
        4,
        "int",
        "How many conversations the gateway answers at the same time; messages of other "
        "chats wait their turn (one chat's messages are always answered in order).",
        minimum=1,
    ),
    Setting(
        "gateway.session_reset.mode",
        "idle",
        "str",
        "When a chat's conversation starts over by itself (its memory and skills stay; "
        "`/new` starts over at any time): `idle` after `idle_minutes` without a message, "
        "`daily` at the first message after `at_hour`, `both`, or `none` (never).",
        choices=("idle", "daily", "both", "none"),
    ),
    Setting(
        "gateway.session_reset.idle_minutes",
        1440,
        "int",
        "Minutes without a message after which a chat's next message starts a new "
        "conversation (modes `idle` and `both`).",
        minimum=1,
    ),
    Setting(
        "gateway.session_reset.at_hour",
        4,
        "int",
        "The hour of the day (0-23, the gateway's local time) from which a chat's next "
        "message starts a new conversation (modes `daily` and `both`).",
        minimum=0,
        maximum=23,
    ),
    Setting(
        "gateway.shutdown_timeout",
        30,
        "number",
        "Seconds a stopping gateway lets running answers finish; what is still running then "
        "is stopped and answered after the next start.",
        minimum=0,
    ),
    Setting(
        "gateway.pairing",
        True,
        "bool",
        "Answer a user who is not allowed with a one-time pairing code; the owner lets them "
        "in with `hermes gateway pair approve CODE`. Off: such users get no answer at all.",
    ),
    Setting(
        "gateway.send_retries",
        5,
        "int",
        "How many times a reply that failed to send is retried (with backoff, honouring the "
        "platform's retry-after) before the user is told it could not be delivered.",
        minimum=0,
    ),
    Setting(
        "gateway.reconnect_max_delay",
        60,
        "number",
        "Longest wait, in seconds, between attempts to reconnect to a platform. Attempts "
        "never stop; the wait grows exponentially (with jitter) up to this.",
        minimum=0.1,
    ),
    Setting(
        "gateway.platforms.api_server.enabled",
        False,
        "bool",
        "Serve the OpenAI-compatible HTTP API (`/v1/chat/completions`, `/v1/models`) from "
        "the gateway. Needs `API_SERVER_KEY` in `.env`: clients send it as a bearer token.",
    ),
    Setting(
        "gateway.platforms.api_server.host",
        "127.0.0.1",
        "str",
        "Address the HTTP API listens on (`0.0.0.0` exposes it to the network).",
    ),
    Setting(
        "gateway.platforms.api_server.port",
        8642,
        "int",
        "TCP port of the HTTP API.",
        minimum=1,
        maximum=65535,
    ),
    # --- webhooks (gateway/platforms/webhook.py) ---
    Setting(
        "gateway.platforms.webhook.enabled",
        False,
        "bool",
        "Receive webhooks at `POST /hooks/<route>` (needs the `webhook` extra and at least "
        "one route in `gateway.platforms.webhook.routes`). Each request must carry an "
        "HMAC-SHA256 signature of its body (`X-Hub-Signature-256`, as GitHub sends).",
    ),
    Setting(
        "gateway.platforms.webhook.host",
        "127.0.0.1",
        "str",
        "Address the webhook endpoint listens on (`0.0.0.0` exposes it to the network; put "
        "a TLS reverse proxy in front of it).",
    ),
    Setting(
        "gateway.platforms.webhook.port",
        8644,
        "int",
        "TCP port of the webhook endpoint.",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "gateway.platforms.webhook.max_body_bytes",
        1048576,
        "int",
        "Largest webhook body accepted, in bytes; a larger one is refused with 413.",
        minimum=1024,
    ),
    Setting(
        "gateway.platforms.webhook.routes",
        {},
        "dict",
        "Webhook routes by name (the URL is `/hooks/<name>`). Each has `prompt` (a template: "
        "`{body}`, `{payload}`, `{payload.field.sub}`, `{{`/`}}` for braces), `secret_env` "
        "(the `.env` variable holding the HMAC secret), optional `deliver` (`none`, or "
        "`PLATFORM:CHAT[:THREAD]`: where the answer is sent) and `wait` (true: the HTTP "
        "response carries the answer).",
    ),
    # --- Discord (gateway/platforms/discord.py) ---
    Setting(
        "gateway.platforms.discord.enabled",
        False,
        "bool",
        "Connect the gateway to Discord as a bot (needs the `discord` extra and "
        "`DISCORD_BOT_TOKEN` in `.env`). It answers direct messages and messages that "
        "mention it in server channels and threads.",
    ),
    Setting(
        "gateway.platforms.discord.api_base",
        "",
        "str",
        "Root of the Discord REST API, e.g. `https://discord.com/api/v10`. Empty: Discord's "
        "own. The Gateway (websocket) URL is asked from this API (`GET /gateway/bot`).",
    ),
    *platform_settings("discord", "Discord"),
    # --- Slack (gateway/platforms/slack.py) ---
    Setting(
        "gateway.platforms.slack.enabled",
        False,
        "bool",
        "Connect the gateway to a Slack workspace over Socket Mode (needs the `slack` extra, "
        "`SLACK_BOT_TOKEN` (xoxb-) and `SLACK_APP_TOKEN` (xapp-) in `.env`). It answers "
        "direct messages and mentions in channels, in threads.",
    ),
    Setting(
        "gateway.platforms.slack.api_base",
        "",
        "str",
        "Root of the Slack Web API, e.g. `https://slack.com/api/`. Empty: Slack's own. The "
        "Socket Mode websocket URL comes from this API (`apps.connections.open`).",
    ),
    *platform_settings("slack", "Slack"),
    # --- Matrix (gateway/platforms/matrix.py) ---
    Setting(
        "gateway.platforms.matrix.enabled",
        False,
        "bool",
        "Connect the gateway to a Matrix homeserver as a bot account (needs the `matrix` "
        "extra, and `MATRIX_ACCESS_TOKEN` or `MATRIX_PASSWORD` in `.env`). End-to-end "
        "encrypted rooms are not supported.",
    ),
    Setting(
        "gateway.platforms.matrix.homeserver",
        "",
        "str",
        "Base URL of the homeserver's client API, e.g. `https://matrix.example.org`.",
    ),
    Setting(
        "gateway.platforms.matrix.user_id",
        "",
        "str",
        "The bot's Matrix user id, e.g. `@hermes:example.org`. Needed with `MATRIX_PASSWORD`; "
        "with `MATRIX_ACCESS_TOKEN` it is checked against the token's owner when set.",
    ),
    Setting(
        "gateway.platforms.matrix.device_id",
        "",
        "str",
        "Device to log in as with `MATRIX_PASSWORD`. Empty: the device created by the first "
        "login is remembered (in `platforms/matrix.json`) and reused, so restarts do not "
        "pile up devices.",
    ),
    Setting(
        "gateway.platforms.matrix.require_mention",
        True,
        "bool",
        "In rooms with more than the bot and one person, answer only messages that mention "
        "the bot (a pill, its user id, or its name at the start), reply to one of its "
        "messages, or continue a thread it answers in. Off: every message in such rooms.",
    ),
    *platform_settings("matrix", "Matrix"),
    # --- IRC (gateway/platforms/irc.py) ---
    Setting(
        "gateway.platforms.irc.enabled",
        False,
        "bool",
        "Connect the gateway to an IRC server (no extra needed). It answers private messages "
        "and, in `channels`, lines addressed to it (`nick: ...`). `IRC_PASSWORD` in `.env` "
        "is sent as the server password (PASS) when set.",
    ),
    Setting(
        "gateway.platforms.irc.host",
        "",
        "str",
        "IRC server host name, e.g. `irc.libera.chat`.",
    ),
    Setting(
        "gateway.platforms.irc.port",
        6697,
        "int",
        "IRC server port (6697 is the usual TLS port, 6667 the plain one).",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "gateway.platforms.irc.tls",
        True,
        "bool",
        "Connect with TLS (certificate checked against the system's CAs).",
    ),
    Setting(
        "gateway.platforms.irc.nick",
        "hermes",
        "str",
        "The bot's nick. When it is taken, `nick_`, `nick__`, ... are tried.",
    ),
    Setting(
        "gateway.platforms.irc.channels",
        [],
        "list[str]",
        "Channels to join, e.g. `['#hermes']`. In a channel the bot answers only lines "
        "addressed to it (`nick: question`); private messages are always read.",
    ),
    Setting(
        "gateway.platforms.irc.ping_interval",
        60,
        "number",
        "Seconds of silence from the server after which the bot sends a PING; when even "
        "that gets no answer for 2.5 times this long, it reconnects.",
        minimum=1,
    ),
    *platform_settings("irc", "IRC"),
    # --- E-mail (gateway/platforms/email.py) ---
    Setting(
        "gateway.platforms.email.enabled",
        False,
        "bool",
        "Answer e-mail: new mail is read over IMAP (IDLE), replies are sent over SMTP, one "
        "conversation per mail thread. Needs `EMAIL_PASSWORD` in `.env`. Use a mailbox of "
        "its own: every unread mail in it is taken as a message to the agent.",
    ),
    Setting(
        "gateway.platforms.email.address",
        "",
        "str",
        "The agent's own e-mail address: the From of its replies; mail from it is ignored.",
    ),
    Setting(
        "gateway.platforms.email.username",
        "",
        "str",
        "Login name for IMAP and SMTP. Empty: `address`.",
    ),
    Setting(
        "gateway.platforms.email.imap_host",
        "",
        "str",
        "IMAP server host name, e.g. `imap.example.org`.",
    ),
    Setting(
        "gateway.platforms.email.imap_port",
        993,
        "int",
        "IMAP server port (993 for `tls`, 143 for `starttls` or `off`).",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "gateway.platforms.email.imap_tls",
        "tls",
        "str",
        "IMAP connection security: `tls` (TLS from the start), `starttls` (upgraded, "
        "refused if the server cannot) or `off` (plain text; only for a server on the same "
        "host).",
        choices=("tls", "starttls", "off"),
    ),
    Setting(
        "gateway.platforms.email.mailbox",
        "INBOX",
        "str",
        "The IMAP mailbox (folder) watched for new mail.",
    ),
    Setting(
        "gateway.platforms.email.smtp_host",
        "",
        "str",
        "SMTP server host name for replies, e.g. `smtp.example.org`.",
    ),
    Setting(
        "gateway.platforms.email.smtp_port",
        587,
        "int",
        "SMTP server port (587 for `starttls`, 465 for `tls`).",
        minimum=1,
        maximum=65535,
    ),
    Setting(
        "gateway.platforms.email.smtp_tls",
        "starttls",
        "str",
        "SMTP connection security: `tls`, `starttls` or `off`, as for `imap_tls`.",
        choices=("tls", "starttls", "off"),
    ),
    *platform_settings("email", "E-mail"),
    # --- Telegram (gateway/platforms/telegram.py) ---
    Setting(
        "gateway.platforms.telegram.enabled",
        False,
        "bool",
        "Connect the gateway to Telegram as a bot, by long polling (needs the `telegram` "
        "extra and `TELEGRAM_BOT_TOKEN` from @BotFather in `.env`). It answers private "
        "chats, and in groups messages that mention it or reply to it.",
    ),
    Setting(
        "gateway.platforms.telegram.base_url",
        "",
        "str",
        "Bot API endpoint up to and including `/bot` (the token is appended), for a "
        "self-hosted Bot API server, e.g. `http://127.0.0.1:8081/bot`. Empty: "
        "`https://api.telegram.org/bot`.",
    ),
    Setting(
        "gateway.platforms.telegram.poll_timeout",
        25,
        "int",
        "Seconds one long-polling `getUpdates` request waits for new messages before it is "
        "asked again. A connection silent for this plus 5 seconds is restarted.",
        minimum=1,
        maximum=50,
    ),
    *platform_settings("telegram", "Telegram"),
)

SETTINGS_BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}

#: Dotted prefixes that are sections (mappings holding settings), e.g. ``model``.
SECTIONS: frozenset[str] = frozenset(
    ".".join(s.key.split(".")[:i]) for s in SETTINGS for i in range(1, s.key.count(".") + 1)
)


def _build_defaults() -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for setting in SETTINGS:
        *parents, leaf = setting.key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(setting.default)
    return tree


DEFAULT_CONFIG: dict[str, Any] = _build_defaults()


def default_config() -> dict[str, Any]:
    """A fresh deep copy of ``DEFAULT_CONFIG`` that the caller may change."""
    return copy.deepcopy(DEFAULT_CONFIG)


def type_name(value: Any) -> str:
    """Name a YAML value's type the way a user thinks of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


_EXPECTED = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "bool-or-auto": "true, false or auto",
    "list[str]": "a list of strings",
    "list[id]": "a list of ids (strings or integers)",
    "dict": "a mapping",
    "list[dict]": "a list of mappings",
}


def check_value(setting: Setting, value: Any) -> str | None:
    """Return why ``value`` does not fit ``setting``, or None when it does."""
    kind = setting.kind
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]
    ok: bool
    if kind == "str":
        ok = isinstance(value, str)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "bool-or-auto":
        ok = isinstance(value, bool) or value in ("auto", "true", "false")
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
    elif kind == "list[id]":
        ok = isinstance(value, list) and all(
            isinstance(item, str | int) and not isinstance(item, bool) for item in value
        )
    elif kind == "dict":
        ok = isinstance(value, dict)
    elif kind == "list[dict]":
        ok = isinstance(value, list) and all(isinstance(item, dict) for item in value)
    else:  # pragma: no cover - a programming error in SETTINGS
        raise AssertionError(f"unknown kind {kind!r} for {setting.key}")
    if not ok:
        expected = _EXPECTED[kind] + (" or null" if setting.kind.endswith("?") else "")
        return f"expected {expected}, got {_show(value)} ({type_name(value)})"
    if setting.choices and value not in setting.choices:
        return f"must be one of {', '.join(setting.choices)}; got {_show(value)}"
    if setting.minimum is not None and value < setting.minimum:
        return f"must be at least {setting.minimum:g}; got {value}"
    if setting.maximum is not None and value > setting.maximum:
        return f"must be at most {setting.maximum:g}; got {value}"
    return None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def find_problems(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Check a user configuration tree; return ``(dotted key, problem)`` pairs.

    Unknown keys are reported as problems too; the loader decides whether an
    unknown key is fatal (`config check`) or a warning (every other command).
    """
    problems: list[tuple[str, str]] = []
    for raw_key, value in data.items():
        key = f"{prefix}{raw_key}"
        if not isinstance(raw_key, str):
            problems.append((key, f"keys must be strings, got {type_name(raw_key)}"))
            continue
        setting = SETTINGS_BY_KEY.get(key)
        if setting is not None:
            reason = check_value(setting, value)
            if reason:
                problems.append((key, reason))
            elif key == "mcp_servers":  # An open mapping whose entries MCP checks itself.
                from hermes_agent.mcp.config import find_problems as mcp_problems

                problems.extend(mcp_problems(value))
        elif key in SECTIONS:
            if isinstance(value, dict):
                problems.extend(find_problems(value, key + "."))
            elif value is not None:  # An empty section (`model:`) is harmless.
                problems.append(
                    (key, f"expected a mapping, got {_show(value)} ({type_name(value)})")
                )
        else:
            problems.append((key, UNKNOWN_KEY))
    return problems


UNKNOWN_KEY = "unknown key"

"""`hermes setup`: pick a provider, store its key, choose the model and workspace.

Two paths share one :class:`Choices` and one :func:`apply`: the interactive
wizard (plain prompts, the key read without echo) and ``--non-interactive``
with flags for scripts. Nothing is written until every answer is known, so an
interrupted wizard leaves the old configuration exactly as it was.

The key never appears on a command line (where ``ps`` would show it): the
wizard reads it without echo, and scripts pass it in the environment variable
that ``--api-key-env`` names (default: the provider's usual one).
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from hermes_agent import home
from hermes_agent.cli.common import load_env
from hermes_agent.config import envfile, loader, merge
from hermes_agent.config.managed import require_unmanaged
from hermes_agent.errors import HermesError, UsageError
from hermes_agent.providers.catalog import DEFAULT_PROVIDER, PROVIDERS, ProviderInfo

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Choose a provider, store its API key in .env (0600), pick the default model and the "
        "agent's workspace. Without --non-interactive it asks; with it, the flags decide."
    )
    parser.add_argument(
        "--non-interactive",
        action="store_true",
        help="ask nothing; use the flags (the key is read from the variable --api-key-env names)",
    )
    parser.add_argument("--provider", choices=list(PROVIDERS), help="who serves the model")
    parser.add_argument("--model", help="default model id")
    parser.add_argument("--base-url", help="API endpoint (required for --provider custom)")
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the key (default: the provider's usual one)",
    )
    parser.add_argument("--workspace", metavar="DIR", help="the agent's working directory")
    parser.set_defaults(handler=run)


@dataclass
class Choices:
    provider: ProviderInfo
    model: str
    base_url: str
    key_env: str
    #: The key to store in .env; None keeps whatever is there.
    api_key: str | None
    workspace: Path
    #: Where the workspace came from when --workspace was not given ("" when it was).
    workspace_origin: str = ""


def run(args: argparse.Namespace) -> int:
    require_unmanaged("hermes setup")
    load_env()
    if args.non_interactive:
        choices = from_flags(args)
    else:
        if not sys.stdin.isatty():
            raise UsageError(
                "hermes setup asks questions and needs a terminal; "
                "for scripts use: hermes setup --non-interactive --provider NAME ..."
            )
        try:
            choices = Wizard(args).run()
        except EOFError:
            raise HermesError("\nsetup cancelled; nothing was changed") from None
    apply(choices)
    return 0


def _check_url(url: str) -> str:
    url = url.strip()
    if not re.match(r"^https?://[^\s/]+", url):
        raise UsageError(f"base URL must start with http:// or https://, got {url!r}")
    return url.rstrip("/")


def _check_env_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise UsageError(f"--api-key-env: {name!r} is not a valid environment variable name")
    return name


def _workspace(raw: str) -> Path:
    path = Path(os.path.expandvars(raw.strip())).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if path.exists() and not path.is_dir():
        raise UsageError(f"workspace {path} exists and is not a directory")
    return path


def _current(key: str) -> str:
    """A value from the existing config.yaml ('' when unset or unreadable)."""
    try:
        user, _ = loader.read_user_config()
    except HermesError:
        return ""
    value = merge.get_path(user, key, "")
    return value if isinstance(value, str) else ""


def from_flags(args: argparse.Namespace) -> Choices:
    provider = PROVIDERS[args.provider or _current("model.provider") or DEFAULT_PROVIDER]
    base_url = _check_url(args.base_url) if args.base_url else ""
    if provider.name == "custom" and not base_url:
        raise UsageError("--provider custom needs --base-url (e.g. http://127.0.0.1:11434/v1)")
    model = (args.model or provider.default_model).strip()
    if not model:
        raise UsageError(f"--provider {provider.name} has no default model; pass --model")
    key_env = _check_env_name(args.api_key_env) if args.api_key_env else provider.key_env
    api_key = os.environ.get(key_env) or None
    workspace, origin = _default_workspace(args)
    return Choices(provider, model, base_url, key_env, api_key, workspace, origin)


def _default_workspace(args: argparse.Namespace) -> tuple[Path, str]:
    """The workspace, and where it came from when --workspace was not given."""
    if args.workspace:
        return _workspace(args.workspace), ""
    kept = _current("terminal.cwd")
    if kept:
        return _workspace(kept), "kept from config.yaml"
    return _workspace(str(Path.cwd())), "the current directory"


def hermes_checkout(path: Path) -> bool:
    """Whether ``path`` is in hermes' own source tree: a poor workspace to hand the agent.

    After `install.sh` or a clone, the current directory is often the checkout
    itself. A checkout is a folder with ``src/hermes_agent``; the one this hermes
    runs from (an editable install) counts for any folder inside it.
    """
    import hermes_agent

    try:
        resolved = path.resolve()
    except OSError:
        return False
    if (resolved / "src" / "hermes_agent" / "__init__.py").is_file():
        return True
    package = Path(hermes_agent.__file__).resolve().parent
    root = package.parent.parent
    running_from_checkout = package.parent.name == "src" and (root / "pyproject.toml").is_file()
    return running_from_checkout and resolved.is_relative_to(root)


class Wizard:
    """The interactive path: plain prompts that work in any terminal."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def ask(self, question: str, default: str = "") -> str:
        suffix = f" [{default}]" if default else ""
        answer = input(f"{question}{suffix}: ").strip()
        return answer or default

    def run(self) -> Choices:
        print("hermes setup: choose how hermes talks to a model.")
        print(f"Settings go to {home.config_path()}, keys to {home.env_path()} (mode 0600).\n")
        provider = self.ask_provider()
        base_url = self.ask_base_url(provider)
        key_env = self.args.api_key_env or provider.key_env
        api_key = self.ask_key(provider, key_env)
        model = self.ask_model(provider)
        workspace = self.ask_workspace()
        origin = "" if self.args.workspace else "as you answered"
        return Choices(provider, model, base_url, key_env, api_key, workspace, origin)

    def ask_provider(self) -> ProviderInfo:
        if self.args.provider:
            return PROVIDERS[self.args.provider]
        names = list(PROVIDERS)
        current = _current("model.provider") or DEFAULT_PROVIDER
        print("Provider:")
        for number, name in enumerate(names, 1):
            print(f"  {number}) {PROVIDERS[name].label}")
        default = str(names.index(current) + 1) if current in names else "1"
        while True:
            answer = self.ask("Choose a number or name", default).lower()
            if answer.isascii() and answer.isdigit() and 1 <= int(answer) <= len(names):
                return PROVIDERS[names[int(answer) - 1]]
            if answer in PROVIDERS:
                return PROVIDERS[answer]
            print(f"  Please answer 1-{len(names)} or one of: {', '.join(names)}")

    def ask_base_url(self, provider: ProviderInfo) -> str:
        if self.args.base_url:
            return _check_url(self.args.base_url)
        if provider.name != "custom":
            return ""
        current = _current("model.base_url") if _current("model.provider") == "custom" else ""
        while True:
            answer = self.ask(f"Base URL ({provider.hint})", current)
            try:
                return _check_url(answer)
            except UsageError as exc:
                print(f"  {exc}")

    def ask_key(self, provider: ProviderInfo, key_env: str) -> str | None:
        present = os.environ.get(key_env)
        if present:
            print(f"{key_env} is already set ({envfile.mask(present)}).")
            prompt = "New key (Enter keeps the current one): "
        elif provider.key_required:
            print(f"API key for {provider.label.split(' (')[0]}: {provider.hint}")
            prompt = f"{key_env} (input is hidden): "
        else:
            prompt = f"API key, if the server needs one ({key_env}; Enter for none): "
        key = getpass.getpass(prompt).strip()
        if not key and not present and provider.key_required:
            print(f"  No key stored; add it later with: hermes config set {key_env} KEY")
        return key or None

    def ask_model(self, provider: ProviderInfo) -> str:
        if self.args.model:
            return str(self.args.model)
        current = _current("model.default") if _current("model.provider") == provider.name else ""
        while True:
            model = self.ask("Default model", current or provider.default_model)
            if model:
                return model
            print("  A model id is needed (for Ollama, e.g. llama3.1:8b).")

    def ask_workspace(self) -> Path:
        default = self.args.workspace or _current("terminal.cwd") or str(Path.cwd())
        while True:
            answer = self.ask("Workspace (the agent's working directory)", default)
            try:
                return _workspace(answer)
            except UsageError as exc:
                print(f"  {exc}")


def apply(choices: Choices) -> None:
    """Write the choices: config.yaml merged (other keys kept), the key into .env.

    Both files are read and written under the home's lock, so a `hermes config
    set` or the gateway writing at the same moment loses nothing.
    """
    from hermes_agent.home_lock import home_lock

    with home_lock("hermes setup"):
        _apply_locked(choices)
    _report(choices)


def _apply_locked(choices: Choices) -> None:
    user, _ = loader.read_for_update()
    provider = choices.provider
    merge.set_path(user, "model.provider", provider.name)
    merge.set_path(user, "model.default", choices.model)
    for key, value in (
        ("model.base_url", choices.base_url),
        ("model.api_key_env", "" if choices.key_env == provider.key_env else choices.key_env),
    ):
        if value:
            merge.set_path(user, key, value)
        else:
            merge.unset_path(user, key)  # Fall back to the provider's own value.
    merge.set_path(user, "terminal.cwd", str(choices.workspace))
    if not choices.workspace.exists():
        try:
            choices.workspace.mkdir(parents=True)
        except OSError as exc:
            raise HermesError(
                f"cannot create workspace {choices.workspace}: {exc.strerror}"
            ) from None
    loader.save_user_config(user)
    if choices.api_key is not None:
        envfile.set_env_value(home.env_path(), choices.key_env, choices.api_key)


def _report(choices: Choices) -> None:
    provider = choices.provider
    has_key = choices.api_key is not None or bool(os.environ.get(choices.key_env))
    print()
    print(f"provider   {provider.name}" + (f" ({choices.base_url})" if choices.base_url else ""))
    print(f"model      {choices.model}")
    if has_key:
        where = "saved in .env" if choices.api_key is not None else "already set"
        print(f"key        {choices.key_env} ({where})")
    else:
        fix = f"hermes config set {choices.key_env} KEY"
        print(
            f"key        none yet; add it with: {fix}"
            if provider.key_required
            else f"key        none (if the server needs one: {fix})"
        )
    origin = choices.workspace_origin
    if origin and origin != "as you answered":
        print(f"workspace  {choices.workspace} ({origin}; choose another with --workspace DIR)")
    else:
        print(f"workspace  {choices.workspace}")
    if hermes_checkout(choices.workspace):
        print(
            "warning: the workspace is hermes' own source checkout: the agent would work in "
            "(and could change) hermes itself. Choose another with `hermes setup --workspace DIR`.",
            file=sys.stderr,
        )
    print(f"\nSaved to {home.config_path()}. Start talking to the agent with: hermes chat")

"""The deployment spec: what the NixOS module hands to `hermes deploy apply`.

The module (``services.hermes-agent``) declares options and renders them,
with ``builtins.toJSON``, into one JSON document; everything that *does*
something with those options lives in Python (:mod:`hermes_agent.deploy.apply`)
so it can be tested with pytest. This module parses and checks that document.

Format, version 1 (a JSON object; keys mirror the module's options)::

    {
      "version": 1,                          // required; this hermes understands 1
      "manager": "nixos",                    // "nixos" or "home-manager"; default "nixos":
                                             //   written to .managed, named by the CLI's refusals
      "stateDir": "/var/lib/hermes",         // required, absolute
      "workingDirectory": "/var/lib/hermes/workspace",
                                             // absolute; default "<stateDir>/workspace"
      "settings": {"model": {"default": "anthropic/claude-sonnet-4"}},
                                             // any JSON object; default {}
      "configFile": null,                    // null or absolute path; default null
      "environment": {"LOG_LEVEL": "info"},  // string -> string; default {}
      "environmentFiles": ["/run/secrets/hermes.env"],
                                             // absolute paths; default []
      "authFile": null,                      // null or absolute path; default null
      "authFileForceOverwrite": false,       // default false
      "documents": {                         // file name -> content; default {}
        "SOUL.md": "You are terse.\n",       //   a string is the file's content
        "USER.md": {"source": "/nix/store/...-USER.md"}
                                             //   {"source": path} copies that file
      },
      "mcpServers": {                        // server name -> definition; default {}
        "fs": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem"],
               "url": null}                  //   null values are dropped ("not set")
      },
      "container": {                         // default: every field's default
        "enable": false,                     //   default false
        "backend": "docker",                 //   "docker" or "podman"; default "docker"
        "image": "ubuntu:24.04",             //   default "ubuntu:24.04"
        "extraVolumes": [],                  //   strings; default []
        "extraOptions": [],                  //   strings; default []
        "entrypoint": "#!/bin/sh\n..."       //   the entrypoint script's text; default ""
      }
    }

Rules: an unknown key (at the top level, in ``container`` or in a document
object) is an error, as is a value of the wrong type, a relative path, an
environment variable name that is not ``[A-Za-z_][A-Za-z0-9_]*``, or a
document name that is not a plain file name (no ``/``, not ``.`` or ``..``).
Every problem is listed at once; nothing is written when there is one
(:class:`SpecError`, exit status 2). The full description, with what each key
does when applied, is ``docs/deployment-spec.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hermes_agent.errors import UsageError

SPEC_VERSION = 1
BACKENDS = ("docker", "podman")
#: Who renders specs: the NixOS module or the home-manager module (``.managed`` names it).
MANAGERS = ("nixos", "home-manager")
DEFAULT_IMAGE = "ubuntu:24.04"

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOP_KEYS = (
    "version",
    "manager",
    "stateDir",
    "workingDirectory",
    "settings",
    "configFile",
    "environment",
    "environmentFiles",
    "authFile",
    "authFileForceOverwrite",
    "documents",
    "mcpServers",
    "container",
)
_CONTAINER_KEYS = ("enable", "backend", "image", "extraVolumes", "extraOptions", "entrypoint")


class SpecError(UsageError):
    """The spec is not one this hermes can apply; ``problems`` lists every reason."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Document:
    """One file installed into the working directory: given ``text`` or copied ``source``."""

    name: str
    text: str | None = None
    source: Path | None = None


@dataclass(frozen=True)
class Container:
    """``container.*``: how the persistent container is made (container mode only)."""

    enable: bool = False
    backend: str = "docker"
    image: str = DEFAULT_IMAGE
    extra_volumes: tuple[str, ...] = ()
    extra_options: tuple[str, ...] = ()
    entrypoint: str = ""


@dataclass(frozen=True)
class Spec:
    """A checked deployment spec (see the module docstring for the JSON form)."""

    state_dir: Path
    working_directory: Path
    version: int = SPEC_VERSION
    settings: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: tuple[Path, ...] = ()
    auth_file: Path | None = None
    auth_file_force_overwrite: bool = False
    documents: tuple[Document, ...] = ()
    mcp_servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    container: Container = field(default_factory=Container)
    #: ``nixos`` or ``home-manager``: the content of ``.managed``.
    manager: str = "nixos"


def _type_name(value: Any) -> str:
    from hermes_agent.config.schema import type_name

    return type_name(value)


class _Checker:
    """Collects every problem so the user fixes them in one round."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key}: {message}")

    def expect(self, key: str, value: Any, kind: type, what: str) -> bool:
        if isinstance(value, kind):
            return True
        self.fail(key, f"expected {what}, got {_type_name(value)}")
        return False

    def path(self, key: str, value: Any, *, nullable: bool = False) -> Path | None:
        if value is None and nullable:
            return None
        what = "an absolute path or null" if nullable else "an absolute path"
        if not self.expect(key, value, str, what):
            return None
        if not value.startswith("/") or "\0" in value:
            self.fail(key, f"expected {what}, got {value!r}")
            return None
        return Path(value)

    def strings(self, key: str, value: Any) -> tuple[str, ...]:
        if not self.expect(key, value, list, "a list of strings"):
            return ()
        for index, item in enumerate(value):
            self.expect(f"{key}[{index}]", item, str, "a string")
        return tuple(item for item in value if isinstance(item, str))


def _plain_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\0" not in name and name not in (".", "..")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def parse_spec(data: Any, source: str = "deployment spec") -> Spec:
    """Check ``data`` (the decoded JSON) and return a :class:`Spec`.

    Raises :class:`SpecError` listing every problem, each prefixed with
    ``source`` (the spec file's name) and the key.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a JSON object, got {_type_name(data)}")
    version = data.get("version")
    if "version" not in data:
        raise SpecError(f'{source}: version: missing; this hermes applies "version": 1')
    if isinstance(version, bool) or version != SPEC_VERSION:
        raise SpecError(
            f"{source}: version: unsupported spec version {json.dumps(version)}; this hermes "
            f"applies version {SPEC_VERSION} (is the hermes package older than the module?)"
        )
    check = _Checker(source)
    for key in data:
        if key not in _TOP_KEYS:
            check.fail(str(key), f"unknown key (known: {', '.join(_TOP_KEYS)})")

    if "stateDir" not in data:
        check.fail("stateDir", "missing (an absolute path, e.g. /var/lib/hermes)")
    state_dir = check.path("stateDir", data.get("stateDir"))
    working: Path | None = None
    if "workingDirectory" in data:
        working = check.path("workingDirectory", data["workingDirectory"])
    elif state_dir is not None:
        working = state_dir / "workspace"

    settings = data.get("settings", {})
    if not check.expect("settings", settings, dict, "an object"):
        settings = {}
    config_file = check.path("configFile", data.get("configFile"), nullable=True)

    environment: dict[str, str] = {}
    raw_env = data.get("environment", {})
    if check.expect("environment", raw_env, dict, "an object of strings"):
        for name, value in raw_env.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                check.fail(f"environment.{name}", "not a valid environment variable name")
            elif check.expect(f"environment.{name}", value, str, "a string"):
                environment[name] = value

    env_files: list[Path] = []
    raw_files = data.get("environmentFiles", [])
    if check.expect("environmentFiles", raw_files, list, "a list of absolute paths"):
        for index, item in enumerate(raw_files):
            found = check.path(f"environmentFiles[{index}]", item)
            if found is not None:
                env_files.append(found)

    auth_file = check.path("authFile", data.get("authFile"), nullable=True)
    force = data.get("authFileForceOverwrite", False)
    if not check.expect("authFileForceOverwrite", force, bool, "true or false"):
        force = False

    documents: list[Document] = []
    raw_docs = data.get("documents", {})
    if check.expect("documents", raw_docs, dict, "an object (file name -> content)"):
        for name, value in raw_docs.items():
            key = f"documents.{name}"
            if not isinstance(name, str) or not _plain_name(name):
                check.fail(key, "a document name must be a plain file name (no '/')")
                continue
            if isinstance(value, str):
                documents.append(Document(name, text=value))
            elif isinstance(value, dict):
                extra = sorted(set(value) - {"source"})
                if extra or "source" not in value:
                    check.fail(key, 'expected a string or {"source": "/absolute/path"}')
                    continue
                source_path = check.path(f"{key}.source", value["source"])
                if source_path is not None:
                    documents.append(Document(name, source=source_path))
            else:
                check.fail(
                    key,
                    f'expected a string or {{"source": "/absolute/path"}}, got {_type_name(value)}',
                )

    servers: dict[str, dict[str, Any]] = {}
    raw_servers = data.get("mcpServers", {})
    if check.expect("mcpServers", raw_servers, dict, "an object (server name -> definition)"):
        for name, value in raw_servers.items():
            if not isinstance(name, str) or not name:
                check.fail(f"mcpServers.{name}", "a server name must be a non-empty string")
            elif check.expect(f"mcpServers.{name}", value, dict, "an object"):
                servers[name] = _drop_nulls(value)

    container = _parse_container(check, data.get("container", {}))
    manager = data.get("manager", "nixos")
    if check.expect("manager", manager, str, "a string") and manager not in MANAGERS:
        check.fail("manager", f"must be one of {', '.join(MANAGERS)}; got {manager!r}")

    if check.problems or state_dir is None or working is None:
        raise SpecError(check.problems)
    return Spec(
        state_dir=state_dir,
        working_directory=working,
        settings=settings,
        config_file=config_file,
        environment=environment,
        environment_files=tuple(env_files),
        auth_file=auth_file,
        auth_file_force_overwrite=force,
        documents=tuple(documents),
        mcp_servers=servers,
        container=container,
        manager=manager,
    )


def _parse_container(check: _Checker, raw: Any) -> Container:
    if not check.expect("container", raw, dict, "an object"):
        return Container()
    for key in raw:
        if key not in _CONTAINER_KEYS:
            check.fail(f"container.{key}", f"unknown key (known: {', '.join(_CONTAINER_KEYS)})")
    enable = raw.get("enable", False)
    if not check.expect("container.enable", enable, bool, "true or false"):
        enable = False
    backend = raw.get("backend", "docker")
    if check.expect("container.backend", backend, str, "a string") and backend not in BACKENDS:
        check.fail("container.backend", f"must be one of {', '.join(BACKENDS)}; got {backend!r}")
    image = raw.get("image", DEFAULT_IMAGE)
    if check.expect("container.image", image, str, "a string") and not image.strip():
        check.fail("container.image", "must not be empty")
    entrypoint = raw.get("entrypoint", "")
    check.expect("container.entrypoint", entrypoint, str, "a string (the script's text)")
    return Container(
        enable=enable,
        backend=backend if isinstance(backend, str) else "docker",
        image=image if isinstance(image, str) else DEFAULT_IMAGE,
        extra_volumes=check.strings("container.extraVolumes", raw.get("extraVolumes", [])),
        extra_options=check.strings("container.extraOptions", raw.get("extraOptions", [])),
        entrypoint=entrypoint if isinstance(entrypoint, str) else "",
    )


def load_spec(path: Path) -> Spec:
    """Read and check the spec file at ``path``; every failure names the file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}",
        ) from None
    return parse_spec(data, str(path))

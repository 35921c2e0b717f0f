"""The container's identity: the inputs that require a new container.

In container mode the agent runs in one persistent container whose writable
layer holds whatever the agent installed (apt packages, pip caches...).
Recreating it throws that away, so it happens only when something baked into
the container at creation changes: the image, the volumes, the extra
``docker create`` options, the entrypoint script, or the fixed layout the
module gives every container (``CONTAINER_SCHEMA_VERSION``, bumped in hermes
whenever the module changes the mounts, user or networking it always adds).

Everything else reaches a running container without recreating it:
``settings``, ``environment``, ``documents`` and ``auth.json`` are files
under the state directory mounted at ``/data``, and a new hermes package is
only a new ``current-package`` symlink there. So none of them is hashed.
``container.enable`` and ``container.backend`` are not hashed either: a
container that does not exist yet (first enable, other backend) is created
regardless of the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from hermes_agent.deploy.spec import Spec, parse_spec

#: Bumped when the fixed part of how the module creates the container changes.
CONTAINER_SCHEMA_VERSION = 1

#: Name of the file in ``stateDir`` that holds the identity of the current container.
IDENTITY_FILE = ".container-identity"


def container_identity(spec: Spec | Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of what a container is created from; see the module docstring.

    ``spec`` is a checked :class:`Spec` or the decoded JSON (checked here).
    """
    checked = spec if isinstance(spec, Spec) else parse_spec(spec)
    container = checked.container
    payload = {
        "schema": CONTAINER_SCHEMA_VERSION,
        "image": container.image,
        "extraVolumes": list(container.extra_volumes),
        "extraOptions": list(container.extra_options),
        "entrypoint": container.entrypoint,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

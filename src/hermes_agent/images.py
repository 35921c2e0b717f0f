"""Images shown to the model: checked, cleaned, stored by content, sent within limits.

One entry point for every front end (``hermes chat --image``, ``/image``, the
gateway's photo attachments, ``read_file`` on an image, and ACP image content
blocks): :func:`ingest_bytes` / :func:`ingest_file` take untrusted bytes and
return an :class:`ImageRef`. What happens on the way, and why:

- **Only real raster images** of the formats both wire formats accept are
  decoded (PNG, JPEG, GIF, WebP; BMP is converted), with Pillow restricted to
  those decoders. SVG is refused: a vector file is a document that can carry
  scripts and external references, and the providers do not take it anyway.
- **Bombs are refused before decoding**: a file over :data:`MAX_INPUT_BYTES`, or
  a header announcing more than :data:`MAX_PIXELS` pixels (Pillow's own
  ``MAX_IMAGE_PIXELS`` guard is made an error, not a warning).
- **Metadata is stripped**: the pixels are copied into a fresh image (EXIF
  orientation applied first) and re-encoded, so GPS positions, camera serials,
  comments and ICC profiles never reach a provider or HERMES_HOME.
- **Stored by content** in ``HERMES_HOME/images/<sha256>.<ext>`` (0600, the
  directory 0700; path from :mod:`hermes_agent.home`), at most
  :data:`STORE_MAX_SIDE` pixels a side. Messages in state.db carry only the
  reference (``{"sha256", "media_type", "width", "height", "bytes", "name"}``
  under the message's ``images`` key), never base64.
- **Sent within each provider's limits** (:data:`ANTHROPIC_LIMITS`,
  :data:`OPENAI_LIMITS`): :func:`for_provider` scales down and re-encodes a
  copy when a stored image is larger, cached per process because the whole
  history is sent again on every call.

Never log what this module reads: image bytes and their base64 are binary
content of the user's, and nothing in them is meant for a log line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermes_agent import home
from hermes_agent.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from hermes_agent.config.loader import Config
    from hermes_agent.state.db import StateDB

#: Largest image file read from disk or a platform (bytes); a bigger one is refused
#: unread. Phone photos are 2-12 MB; 25 MB leaves room for PNG screenshots.
MAX_INPUT_BYTES = 25 * 1024 * 1024
#: Most pixels an image may announce; a decompression bomb (a small file claiming a
#: huge canvas) is refused from its header, before any pixel is decoded.
MAX_PIXELS = 50_000_000
#: Longest side of the stored copy: above what any provider uses, so later resizing
#: for a provider never needs the original.
STORE_MAX_SIDE = 4096
#: JPEG quality of re-encoded photos.
JPEG_QUALITY = 88
#: Most images taken from one chat message or mail (the rest get a note): each costs a
#: decode and, on every later call, part of the context.
MAX_PER_MESSAGE = 10

#: One image decoded at a time per process: a decode may hold hundreds of MB.
_DECODING = threading.Lock()
#: Decoders Pillow may use on untrusted input (its other plugins are never tried).
_DECODERS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")
_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp"}
#: Extensions ``read_file`` treats as images (the content decides in the end).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".svg"})


class ImageError(UsageError):
    """An image could not be taken: not an image, too large, gone from the store...

    A usage error (exit status 2): the input was not what hermes can show.
    """


@dataclass(frozen=True)
class Limits:
    """What one provider accepts for one image.

    ``max_side``: longest side in pixels; ``max_bytes``: the encoded file's size.
    """

    name: str
    max_side: int
    max_bytes: int


#: Anthropic: images over 1568 px on the long side are scaled down by the API
#: itself (slower, same tokens), and each image may be at most 5 MB of base64,
#: which is 3.75 MB of file. (docs.anthropic.com, "Vision".)
ANTHROPIC_LIMITS = Limits("anthropic", 1568, 3_750_000)
#: OpenAI chat completions: "high" detail fits an image into 2048x2048 before
#: tiling, so more pixels are wasted; each image may be 20 MB, kept well below so
#: a few images in one request stay small.
OPENAI_LIMITS = Limits("openai", 2048, 10_000_000)


@dataclass(frozen=True)
class ImageRef:
    """A stored image, as messages and the gateway's inbox keep it (JSON-safe)."""

    sha256: str
    media_type: str
    width: int
    height: int
    size: int
    #: The file name the user or the platform gave (for display only; never a path).
    name: str = ""

    @property
    def ext(self) -> str:
        return self.media_type.split("/", 1)[1]

    @property
    def file_name(self) -> str:
        return f"{self.sha256}.{self.ext}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "media_type": self.media_type,
            "width": self.width,
            "height": self.height,
            "bytes": self.size,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ImageRef:
        """The reference in ``raw`` (from state.db: checked, it may have been tampered with)."""
        if not isinstance(raw, dict):
            raise ImageError("an image reference must be an object")
        sha = raw.get("sha256")
        media_type = raw.get("media_type")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ImageError("an image reference without a valid sha256")
        if media_type not in _MEDIA_TYPES.values():
            raise ImageError(f"an image reference with media type {str(media_type)[:40]!r}")
        return cls(
            sha,
            str(media_type),
            _int(raw.get("width")),
            _int(raw.get("height")),
            _int(raw.get("bytes")),
            str(raw.get("name") or "")[:200],
        )

    def describe(self) -> str:
        """``photo.jpg (1024x768 JPEG, 210 KB)``: what the user and the model are told."""
        label = self.name or self.file_name[:12]
        return f"{label} ({self.width}x{self.height} {self.ext.upper()}, {_kb(self.size)})"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _kb(size: int) -> str:
    return f"{size / 1024:.0f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


# --- taking an image in ---------------------------------------------------------------------


def _looks_like_svg(data: bytes) -> bool:
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return (
        head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in data[:65536].lower()
    )


def _decode(data: bytes, label: str, max_side: int = STORE_MAX_SIDE) -> tuple[PILImage.Image, str]:
    """The first frame of ``data``, at most ``max_side`` pixels a side, orientation
    applied, and the format it came in.

    Memory is what a hostile image attacks: a 190 KB PNG can announce 7000x7000 RGBA
    pixels (200 MB decoded). So the image is scaled down before anything else copies
    it (turning, converting, stripping), a JPEG is decoded at a reduced scale where
    its format allows (``draft``), and one decode runs at a time in a process
    (:data:`_DECODING`): a gateway taking ten such images from each of several chats
    held several gigabytes at once.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    if _looks_like_svg(data):
        raise ImageError(
            f"{label} is an SVG (vector) image; only PNG, JPEG, GIF, WebP and BMP are shown to "
            "the model. Convert it to PNG first"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=_DECODERS)
            width, height = opened.size
            if width < 1 or height < 1 or width * height > MAX_PIXELS:
                raise ImageError(
                    f"{label} claims {width}x{height} pixels, more than the "
                    f"{MAX_PIXELS:,} hermes decodes (a decompression bomb?)"
                )
            opened.seek(0)
            orientation = _orientation(opened)
            if (opened.format or "").upper() == "JPEG":
                # The smallest DCT scale still at least max_side on the long side.
                scale = max_side / max(width, height)
                opened.draft(opened.mode, (round(width * scale), round(height * scale)))
            opened.load()
            image = _upright(_fit(_flat(opened), max_side), orientation)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{label} claims more pixels than hermes decodes (a decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{label} is not an image hermes can read (PNG, JPEG, GIF, WebP or BMP)"
        ) from None
    except Exception as exc:  # Truncated, corrupt, or a decoder's surprise: never a crash.
        raise ImageError(f"{label} is a damaged image ({type(exc).__name__})") from None
    return image, (opened.format or "").upper()


def _orientation(image: PILImage.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # A damaged EXIF block: shown as stored.
        return 1
    return value if isinstance(value, int) else 1


def _flat(image: PILImage.Image) -> PILImage.Image:
    """``image`` in a mode that scales smoothly (a palette or 1-bit image resized with
    Lanczos would be resized by nearest neighbour instead)."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("1", "I;16", "I", "F"):
        return image.convert("L")
    return image


def _upright(image: PILImage.Image, orientation: int) -> PILImage.Image:
    """``image`` turned as its EXIF orientation says (ImageOps.exif_transpose's table,
    applied to the scaled copy instead of copying the full-size image once more)."""
    from PIL import Image

    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return image if method is None else image.transpose(method)


def _clean(image: PILImage.Image) -> tuple[PILImage.Image, bool]:
    """A fresh image holding only the pixels (no EXIF, ICC, text chunks); has it alpha?"""
    from PIL import Image

    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode in ("RGB", "L") and "transparency" in image.info
    )
    mode = "RGBA" if alpha else ("L" if image.mode in ("L", "1", "I;16", "I", "F") else "RGB")
    if image.mode != mode:
        image = image.convert(mode)
    fresh = Image.frombytes(mode, image.size, image.tobytes())
    return fresh, alpha


def _encode(
    image: PILImage.Image, lossless: bool, quality: int = JPEG_QUALITY
) -> tuple[str, bytes]:
    """``(ext, bytes)``: PNG for screenshots and transparency, JPEG for photos."""
    out = io.BytesIO()
    if lossless or image.mode == "RGBA":
        image.save(out, "PNG", optimize=False, compress_level=6)
        return "png", out.getvalue()
    image.save(out, "JPEG", quality=quality, optimize=True)
    return "jpeg", out.getvalue()


def _fit(image: PILImage.Image, max_side: int) -> PILImage.Image:
    from PIL import Image

    if max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def ingest_bytes(data: bytes, *, name: str = "", label: str | None = None) -> ImageRef:
    """Check, clean and store ``data``; return its reference.

    The stored file is on disk (fsync'd) before this returns, so a caller may
    acknowledge the message it came with. Raises :class:`ImageError` with a
    message for the user (or the model) when ``data`` is not a usable image.
    """
    label = label or (repr(name[:80]) if name else "the image")
    if len(data) > MAX_INPUT_BYTES:
        raise ImageError(
            f"{label} is {_kb(len(data))}; images over {_kb(MAX_INPUT_BYTES)} are refused"
        )
    if not data:
        raise ImageError(f"{label} is empty")
    with _DECODING:
        decoded, source_format = _decode(data, label)
        try:
            image, alpha = _clean(decoded)
            lossless = alpha or source_format in ("PNG", "GIF", "BMP")
            ext, encoded = _encode(image, lossless)
        except Exception as exc:  # An odd mode or palette the converters refuse.
            raise ImageError(f"{label} could not be converted ({type(exc).__name__})") from None
        width, height = image.size
        del decoded, image
    digest = hashlib.sha256(encoded).hexdigest()
    ref = ImageRef(
        digest,
        _MEDIA_TYPES[ext],
        width,
        height,
        len(encoded),
        os.path.basename(name)[:200],
    )
    target = home.image_path(ref.file_name)
    try:
        os.utime(target)  # Stored already: fresh again, so prune() leaves it to its new user.
    except FileNotFoundError:
        from hermes_agent.fsutil import atomic_write

        atomic_write(target, encoded, mode=home.SECRET_FILE_MODE)
    return ref


def ingest_file(path: Path, *, label: str | None = None) -> ImageRef:
    """:func:`ingest_bytes` for a file the user named (regular files only, size checked first)."""
    label = label or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: {exc.strerror or exc}") from None
    # fstat before fdopen: Python refuses to wrap a directory's descriptor (IsADirectoryError).
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageError(f"{label} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > MAX_INPUT_BYTES:
            raise ImageError(
                f"{label} is {_kb(info.st_size)}; images over {_kb(MAX_INPUT_BYTES)} are refused"
            )
        data = handle.read(MAX_INPUT_BYTES + 1)
    return ingest_bytes(data, name=path.name, label=label)


def pasted_path(text: str) -> Path:
    """The file a user typed or pasted: quoted, ``file://`` URL, or with ``\\ `` escapes.

    Terminals paste a dropped file as ``'/tmp/my photo.png'``, ``/tmp/my\\ photo.png``
    or ``file:///tmp/my%20photo.png``; all mean the same file.
    """
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    elif raw.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        raw = unquote(urlsplit(raw).path)
    else:
        raw = re.sub(r"\\(.)", r"\1", raw)
    if not raw:
        raise ImageError("no file named")
    return Path(raw).expanduser()


# --- reading stored images back ------------------------------------------------------------


def load(ref: ImageRef) -> bytes:
    """The stored bytes of ``ref``; ImageError when the file is gone or not what it says."""
    try:
        data = home.image_path(ref.file_name).read_bytes()
    except FileNotFoundError:
        raise ImageError(f"the image {ref.describe()} is no longer stored") from None
    except OSError as exc:
        raise ImageError(f"cannot read the stored image {ref.file_name}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != ref.sha256:
        raise ImageError(f"the stored image {ref.file_name} was changed; it is not sent")
    return data


_PREPARED: OrderedDict[tuple[str, Limits], tuple[str, bytes]] = OrderedDict()
#: Bytes of prepared copies kept per process (a conversation resends its images on
#: every call; a gateway serves many): the least recently sent go first.
PREPARED_CACHE_BYTES = 64 * 1024 * 1024


_PREPARED_LOCK = threading.Lock()


def for_provider(ref: ImageRef, limits: Limits) -> tuple[str, bytes]:
    """``(media_type, bytes)`` of ``ref`` within ``limits``: scaled and re-encoded if needed."""
    key = (ref.sha256, limits)
    with _PREPARED_LOCK:
        cached = _PREPARED.get(key)
        if cached is not None:
            _PREPARED.move_to_end(key)
            return cached
    data = load(ref)
    result = (ref.media_type, data)
    if max(ref.width, ref.height) > limits.max_side or len(data) > limits.max_bytes:
        result = _shrink(data, ref, limits)
    with _PREPARED_LOCK:
        _PREPARED[key] = result
        total = sum(len(data) for _, data in _PREPARED.values())
        while total > PREPARED_CACHE_BYTES and len(_PREPARED) > 1:
            total -= len(_PREPARED.popitem(last=False)[1][1])
    return result


async def prepare(messages: list[dict[str, Any]], limits: Limits) -> None:
    """Read and scale the history's images in a worker thread, before a request is built.

    Building the request is synchronous; a 4096 px image takes a few hundred
    milliseconds to scale, which must not stall a gateway's other conversations.
    What this leaves in the cache makes :func:`for_provider` instant afterwards.
    """
    refs = [ref for m in messages if "images" in m for ref in refs_of(m)]
    if not refs:
        return
    import asyncio

    def work() -> None:
        for ref in refs:
            try:
                for_provider(ref, limits)
            except ImageError:
                continue  # Said in the request itself ("image not sent: ...").

    await asyncio.to_thread(work)


def _shrink(data: bytes, ref: ImageRef, limits: Limits) -> tuple[str, bytes]:
    with _DECODING:
        return _shrink_now(data, ref, limits)


def _shrink_now(data: bytes, ref: ImageRef, limits: Limits) -> tuple[str, bytes]:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=_DECODERS) as opened:
        opened.load()
        image, alpha = _clean(opened)
    side = min(limits.max_side, max(image.size))
    lossless = ref.ext == "png"
    quality = JPEG_QUALITY
    while True:
        ext, encoded = _encode(_fit(image, side), lossless, quality)
        if len(encoded) <= limits.max_bytes:
            return _MEDIA_TYPES[ext], encoded
        if lossless and not alpha:
            lossless = False  # A huge screenshot: a JPEG of it fits where a PNG did not.
            continue
        if quality > 70 and ext == "jpeg":
            quality -= 10
            continue
        if side <= 256:
            raise ImageError(f"{ref.describe()} cannot be made small enough for {limits.name}")
        side = int(side * 0.75)


def data_url(media_type: str, data: bytes) -> str:
    import base64

    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def refs_of(message: dict[str, Any]) -> list[ImageRef]:
    """The images a stored message carries (bad references skipped: they came from disk)."""
    refs: list[ImageRef] = []
    for raw in message.get("images") or ():
        try:
            refs.append(ImageRef.from_dict(raw))
        except ImageError:
            continue
    return refs


# --- which models see -----------------------------------------------------------------------

#: Model id fragments (lower case) of models known to accept images.
_VISION_MODELS = (
    "claude-3",
    "claude-opus-4",
    "claude-sonnet-4",
    "claude-haiku-4",
    "claude-4",
    "gpt-4o",
    "gpt-4.1",
    "gpt-4-turbo",
    "gpt-5",
    "o3",
    "o4",
    "gemini",
    "llava",
    "vision",
    "pixtral",
    "qwen2.5-vl",
    "qwen-vl",
    "llama-4",
    "gemma-3",
)


def vision_supported(config: Config | None, model: str) -> bool:
    """Whether ``model`` takes images: ``model.vision`` if set, else the known-model list."""
    setting = config.get("model.vision") if config is not None else "auto"
    if setting in (True, "true"):
        return True
    if setting in (False, "false"):
        return False
    name = model.lower()
    return any(fragment in name for fragment in _VISION_MODELS)


def no_vision_message(model: str) -> str:
    return (
        f"the model {model!r} does not take images (model.vision: auto does not know it "
        "as a vision model). Use a model that does, or set `hermes config set model.vision "
        "true` if this one can"
    )


def attach(message: dict[str, Any], refs: list[ImageRef]) -> dict[str, Any]:
    """``message`` with ``refs`` under its ``images`` key (how state.db keeps them)."""
    if not refs:
        return message
    return {**message, "images": [ref.to_dict() for ref in refs]}


def without_images(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` for a model without vision: each image replaced by a one-line note."""
    notes = [
        f"[image {ref.describe()} not shown: this model does not take images]"
        for ref in refs_of(message)
    ]
    plain = {k: v for k, v in message.items() if k != "images"}
    text = str(plain.get("content") or "")
    plain["content"] = "\n".join([*notes, text]) if text else "\n".join(notes)
    return plain


def sniff(head: bytes) -> bool:
    """Whether a file's first bytes are those of a raster image hermes can show."""
    return head.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
    ) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def for_turn(
    config: Config | None, model: str, text: str, stored: str | None
) -> tuple[str, list[ImageRef]]:
    """A gateway message's text and images for the model, from its inbox row's JSON.

    A model without vision gets, instead of the images, a note to tell the user it
    cannot see them: the message is still answered, and nothing is sent that the
    provider would refuse.
    """
    if not stored:
        return text, []
    import json

    try:
        raw = json.loads(stored)
    except ValueError:
        return text, []
    refs = refs_of({"images": raw if isinstance(raw, list) else []})
    if not refs:
        return text, []
    if vision_supported(config, model):
        return text, refs
    names = ", ".join(ref.describe() for ref in refs)
    note = (
        f"[The user sent {len(refs)} image(s) ({names}). The model in use ({model}) cannot "
        "see images: tell the user so, and that a vision model (or `model.vision: true`, "
        "if this model can) would let you see them.]"
    )
    return (f"{note}\n\n{text}" if text else note), []


#: Files younger than this are never pruned: an image is stored before the message
#: that refers to it (a gateway photo, an /image waiting for the next message).
PRUNE_GRACE_SECONDS = 24 * 3600


def prune(db: StateDB, *, grace: float = PRUNE_GRACE_SECONDS) -> tuple[int, int]:
    """Remove stored images no message or inbound row refers to; ``(files, bytes)``.

    Called after sessions are deleted (`hermes sessions delete|prune`). Only names
    that look like ours are touched, and only after ``grace`` seconds.
    """
    import time

    directory = home.images_dir()
    if not directory.is_dir():
        return 0, 0
    keep = db.image_digests()
    now = time.time()
    removed = freed = 0
    for entry in os.scandir(directory):
        sha, _, ext = entry.name.partition(".")
        if sha in keep or not re.fullmatch(r"[0-9a-f]{64}", sha) or ext not in _MEDIA_TYPES:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < grace:
                continue
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        removed += 1
        freed += info.st_size
    return removed, freed

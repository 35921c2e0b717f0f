"""Images shown to the model: storage, both wire formats, read_file, the CLI, hostile files.

The model is ``ScriptedLLM`` on 127.0.0.1 (the real openai and anthropic SDKs talk
to it), which records each request's raw JSON body: the tests decode the image
parts it received and check their type, media type and pixel size.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from hermes_agent import home, images
from hermes_agent.agent.loop import Agent
from hermes_agent.config.loader import load_config
from hermes_agent.providers import settings as provider_settings
from hermes_agent.state.db import StateDB
from hermes_agent.tools.registry import builtin_registry
from peers.llm_server import Reply, ScriptedLLM

pytestmark = pytest.mark.peer("scripted")


def picture(width: int, height: int, fmt: str = "PNG", **save: Any) -> bytes:
    """A real image with some structure (so JPEG and PNG sizes are realistic)."""
    image = Image.new("RGB", (width, height), (200, 40, 40))
    for x in range(0, width, 16):
        for y in range(0, height, 16):
            image.putpixel((x, y), (x % 256, y % 256, 90))
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def gps_jpeg(width: int = 64, height: int = 48) -> bytes:
    """A JPEG carrying EXIF GPS coordinates and a camera serial number."""
    image = Image.new("RGB", (width, height), (10, 120, 200))
    exif = Image.Exif()
    exif[0x010F] = "SpyCam"  # Make
    exif[0xA431] = "SERIAL-1234"  # BodySerialNumber
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def make_agent(
    hermes_home: Path, llm: ScriptedLLM, *, wire: str, model: str = "", config_yaml: str = ""
) -> Agent:
    hermes_home.mkdir(exist_ok=True)
    workspace = hermes_home.parent / "workspace"
    workspace.mkdir(exist_ok=True)
    (hermes_home / "config.yaml").write_text(config_yaml)
    config = load_config()
    if wire == "anthropic":
        settings = provider_settings.resolve(
            config,
            provider="anthropic",
            model=model or "claude-sonnet-4-6",
            base_url=llm.anthropic_base_url,
            environ={"ANTHROPIC_API_KEY": "test-key"},
        )
    else:
        settings = provider_settings.resolve(
            config, provider="custom", model=model or "gpt-4o", base_url=llm.openai_base_url
        )
    db = StateDB()
    sid = db.create_session(source="cli", model=settings.model, cwd=str(workspace))
    return Agent(
        provider=provider_settings.build(settings),
        tools=builtin_registry().select(["file"]),
        config=config,
        db=db,
        session_id=sid,
        cwd=workspace,
    )


def run(agent: Agent, text: str, refs: list[images.ImageRef] | None = None) -> Any:
    async def go() -> Any:
        try:
            return await agent.run(text, images=refs or [])
        finally:
            await agent.provider.aclose()

    return asyncio.run(go())


def received(body: dict[str, Any], wire: str) -> list[tuple[str, str, tuple[int, int]]]:
    """Every image in a recorded request: (where, media type, pixel size)."""
    found: list[tuple[str, str, tuple[int, int]]] = []

    def anthropic_block(block: dict[str, Any], where: str) -> None:
        if block.get("type") == "image":
            source = block["source"]
            assert source["type"] == "base64"
            data = base64.b64decode(source["data"])
            found.append((where, source["media_type"], size_of(data)))
        elif block.get("type") == "tool_result" and isinstance(block.get("content"), list):
            for inner in block["content"]:
                anthropic_block(inner, "tool_result")

    for message in body["messages"]:
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            if wire == "anthropic":
                anthropic_block(part, message["role"])
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"]
                head, _, b64 = url.partition(",")
                assert head.startswith("data:") and head.endswith(";base64")
                found.append((message["role"], head[5:-7], size_of(base64.b64decode(b64))))
    return found


# --- storage ---------------------------------------------------------------------------


def test_stored_by_content_private_and_without_metadata(hermes_home: Path) -> None:
    data = gps_jpeg()
    assert b"SERIAL-1234" in data
    ref = images.ingest_bytes(data, name="holiday.jpg")
    again = images.ingest_bytes(data, name="copy.jpg")
    assert again.sha256 == ref.sha256, "the same picture is stored once"
    path = home.image_path(ref.file_name)
    stored = path.read_bytes()
    assert ref.media_type == "image/jpeg" and (ref.width, ref.height) == (64, 48)
    assert b"SERIAL-1234" not in stored and b"SpyCam" not in stored
    with Image.open(path) as image:
        assert not image.getexif(), "EXIF (GPS) is stripped"
        assert "icc_profile" not in image.info
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert images.load(ref) == stored


def test_state_db_keeps_a_reference_not_base64(hermes_home: Path) -> None:
    ref = images.ingest_bytes(picture(300, 200), name="chart.png")
    with ScriptedLLM([Reply("A red chart.")]) as llm:
        agent = make_agent(hermes_home, llm, wire="openai")
        run(agent, "what is this?", [ref])
    first = agent.db.messages(agent.session_id)[0]
    assert first["images"] == [ref.to_dict()]
    raw = (hermes_home / "state.db").read_bytes()
    b64 = base64.b64encode(images.load(ref))[:40]
    assert b64 not in raw


# --- both wire formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "limit"), [("openai", images.OPENAI_LIMITS), ("anthropic", images.ANTHROPIC_LIMITS)]
)
def test_user_image_in_native_form_resized_to_the_limit(
    hermes_home: Path, wire: str, limit: images.Limits
) -> None:
    big = images.ingest_bytes(picture(3000, 1500), name="wide.png")
    small = images.ingest_bytes(picture(320, 240, "JPEG"), name="small.jpg")
    assert (big.width, big.height) == (3000, 1500)
    with ScriptedLLM([Reply("Two pictures."), Reply("Still two.")]) as llm:
        agent = make_agent(hermes_home, llm, wire=wire)
        run(agent, "compare these", [big, small])
        agent2 = make_agent(hermes_home, llm, wire=wire)
        agent2.session_id = agent.session_id
        agent2.history = agent.db.messages(agent.session_id)
        run(agent2, "and now?")
    scaled = (limit.max_side, limit.max_side // 2)
    for request in llm.requests:
        got = received(request.body, wire)
        assert got == [("user", "image/png", scaled), ("user", "image/jpeg", (320, 240))]
    user = next(m for m in llm.requests[0].body["messages"] if m["role"] == "user")
    if wire == "anthropic":
        assert [b["type"] for b in user["content"]] == ["image", "image", "text"]
    else:
        assert user["content"][0] == {"type": "text", "text": "compare these"}
    assert '"images":' not in json.dumps(llm.requests[0].body), "our reference key never leaks"


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_read_file_returns_the_image_to_the_model(hermes_home: Path, wire: str) -> None:
    (hermes_home.parent / "workspace").mkdir()
    (hermes_home.parent / "workspace" / "shot.png").write_bytes(picture(200, 100))
    llm_script = [
        Reply(tool_calls=[("read_file", {"path": "shot.png"})]),
        Reply("It is a red rectangle."),
    ]
    with ScriptedLLM(llm_script) as llm:
        agent = make_agent(hermes_home, llm, wire=wire)
        result = run(agent, "look at shot.png")
    assert result.text == "It is a red rectangle."
    follow_up = llm.requests[1].body
    where = "tool_result" if wire == "anthropic" else "user"
    assert received(follow_up, wire) == [(where, "image/png", (200, 100))]
    if wire == "openai":
        roles = [m["role"] for m in follow_up["messages"]]
        assert roles[-2:] == ["tool", "user"], "the image follows the tool result"
    tool = agent.db.messages(agent.session_id)[2]
    assert tool["role"] == "tool" and "200x100 PNG" in tool["content"]
    assert tool["images"][0]["width"] == 200


def test_read_file_follows_the_path_policy(hermes_home: Path) -> None:
    # The guard refuses hermes' own secrets (mcp-tokens/) whatever a file looks like.
    tokens = hermes_home / "mcp-tokens"
    tokens.mkdir(parents=True)
    (tokens / "server.png").write_bytes(picture(10, 10))
    target = str(tokens / "server.png")
    with ScriptedLLM([Reply(tool_calls=[("read_file", {"path": target})]), Reply("ok")]) as llm:
        agent = make_agent(hermes_home, llm, wire="openai")
        run(agent, "read it")
    assert received(llm.requests[1].body, "openai") == []
    tool = agent.db.messages(agent.session_id)[2]
    assert tool["content"].startswith("error:") and "images" not in tool


# --- models without vision -------------------------------------------------------------


def test_no_vision_model_gets_a_clear_message_not_a_request(hermes_home: Path) -> None:
    ref = images.ingest_bytes(picture(50, 50))
    with ScriptedLLM([Reply("unused")]) as llm:
        agent = make_agent(hermes_home, llm, wire="openai", model="llama3-8b")
        with pytest.raises(images.ImageError, match=r"does not take images.*model\.vision"):
            run(agent, "see this", [ref])
        assert llm.requests == []
        assert agent.db.messages(agent.session_id) == []


def test_config_key_turns_vision_on_and_off(hermes_home: Path) -> None:
    ref = images.ingest_bytes(picture(50, 50))
    with ScriptedLLM([Reply("I see red.")]) as llm:
        agent = make_agent(hermes_home, llm, wire="openai", model="my-local-model")
        assert agent.context.state["vision"] is False
        off = "model:\n  vision: false\n"
        agent = make_agent(hermes_home, llm, wire="openai", model="gpt-4o", config_yaml=off)
        assert agent.context.state["vision"] is False
        agent = make_agent(
            hermes_home, llm, wire="openai", model="local", config_yaml="model:\n  vision: true\n"
        )
        run(agent, "see this", [ref])
    assert len(received(llm.requests[0].body, "openai")) == 1


def test_history_images_become_notes_for_a_model_without_vision(hermes_home: Path) -> None:
    ref = images.ingest_bytes(picture(40, 30), name="cat.png")
    with ScriptedLLM([Reply("A cat."), Reply("Text only.")]) as llm:
        agent = make_agent(hermes_home, llm, wire="openai")
        run(agent, "what is it?", [ref])
        blind = make_agent(hermes_home, llm, wire="openai", model="text-only-model")
        blind.session_id = agent.session_id
        blind.history = agent.db.messages(agent.session_id)
        run(blind, "and again?")
    second = llm.requests[1].body
    assert received(second, "openai") == []
    first = next(m for m in second["messages"] if m["role"] == "user")
    assert "cat.png (40x30 PNG" in first["content"]
    assert "does not take images" in first["content"]


def test_read_file_image_for_a_model_without_vision(hermes_home: Path) -> None:
    (hermes_home.parent / "workspace").mkdir()
    (hermes_home.parent / "workspace" / "shot.png").write_bytes(picture(20, 20))
    with ScriptedLLM([Reply(tool_calls=[("read_file", {"path": "shot.png"})]), Reply("ok")]) as llm:
        agent = make_agent(hermes_home, llm, wire="anthropic", model="claude-2.1")
        run(agent, "look")
    tool = agent.db.messages(agent.session_id)[2]
    assert "does not take images" in tool["content"] and "images" not in tool


# --- hostile input ---------------------------------------------------------------------


def test_hostile_files_are_refused_with_a_reason(hermes_home: Path, tmp_path: Path) -> None:
    cases: dict[str, tuple[bytes, str]] = {
        "text.png": (b"hello, I am not an image\n" * 10, "not an image"),
        "evil.svg": (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>',
            "SVG",
        ),
        "cut.png": (picture(100, 100)[:200], "damaged"),
        "empty.jpg": (b"", "empty"),
    }
    # A decompression bomb: a tiny PNG that declares 20000 x 20000 pixels.
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, "PNG", optimize=True)
    assert len(bomb.getvalue()) < 100_000
    cases["bomb.png"] = (bomb.getvalue(), "decompression bomb")
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(images.ImageError, match=reason):
            images.ingest_file(path)
    huge = tmp_path / "huge.png"
    with huge.open("wb") as handle:
        handle.truncate(images.MAX_INPUT_BYTES + 1)
    with pytest.raises(images.ImageError, match="refused"):
        images.ingest_file(huge)
    with pytest.raises(images.ImageError, match="not a regular file"):
        images.ingest_file(Path("/dev/zero"))
    with pytest.raises(images.ImageError, match="not a regular file"):
        images.ingest_file(tmp_path)  # a directory (`--image /tmp` was exit 70)
    assert not home.images_dir().exists() or not os.listdir(home.images_dir())


def test_tampered_references_never_leave_the_store(hermes_home: Path) -> None:
    with pytest.raises(images.ImageError):
        images.ImageRef.from_dict({"sha256": "../../etc/passwd", "media_type": "image/png"})
    with pytest.raises(images.ImageError):
        images.ImageRef.from_dict({"sha256": "a" * 64, "media_type": "text/html"})
    ref = images.ingest_bytes(picture(8, 8))
    home.image_path(ref.file_name).write_bytes(picture(9, 9))
    with pytest.raises(images.ImageError, match="changed"):
        images.load(ref)


def test_pasted_paths() -> None:
    assert images.pasted_path("'/tmp/my photo.png' ") == Path("/tmp/my photo.png")
    assert images.pasted_path("/tmp/my\\ photo.png") == Path("/tmp/my photo.png")
    assert images.pasted_path("file:///tmp/my%20photo.png") == Path("/tmp/my photo.png")


# --- the front ends ---------------------------------------------------------------------


def test_gateway_turn_for_a_blind_model_is_a_note(hermes_home: Path) -> None:
    ref = images.ingest_bytes(picture(30, 20), name="pic.png")
    stored = json.dumps([ref.to_dict()])
    text, refs = images.for_turn(None, "gpt-4o", "look", stored)
    assert (text, refs) == ("look", [ref])
    text, refs = images.for_turn(None, "llama3", "look", stored)
    assert refs == [] and "cannot see images" in text and text.endswith("look")
    assert images.for_turn(None, "gpt-4o", "x", '[{"sha256": "../x"}]') == ("x", [])


def chat(base_url: str, *extra: str) -> list[str]:
    return ["chat", "--provider", "custom", "--base-url", base_url, *extra]


@pytest.mark.peer("aimock")
def test_cli_image_flag_on_the_openai_wire(hermes: Any, tmp_path: Path) -> None:
    from peers.aimock import Aimock

    shot, photo = tmp_path / "shot.png", tmp_path / "photo.jpg"
    shot.write_bytes(picture(120, 80))
    photo.write_bytes(gps_jpeg(5000, 2500))
    fixture = {"match": {"userMessage": "describe"}, "response": {"content": "Two images."}}
    with Aimock([fixture]) as mock:
        result = hermes(
            *chat(mock.openai_base_url, "-m", "gpt-4o", "--image", str(shot)),
            "--image",
            str(photo),
            "-q",
            "describe",
        )
        (request,) = mock.journal(path="/v1/chat/completions")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Two images.\n"
    assert received(request["body"], "openai") == [
        ("user", "image/png", (120, 80)),
        ("user", "image/jpeg", (2048, 1024)),  # Stored at 4096 px, sent at the limit.
    ]


def test_cli_refuses_images_it_cannot_show(hermes: Any, tmp_path: Path) -> None:
    from helpers import assert_clean_failure

    svg = tmp_path / "logo.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>')
    png = tmp_path / "ok.png"
    png.write_bytes(picture(10, 10))
    nobody = "http://127.0.0.1:9/v1"  # Never reached: refused before any request.
    blind = hermes(*chat(nobody, "-m", "llama3", "--image", str(png), "-q", "hi"))
    assert_clean_failure(blind, 2)
    assert "does not take images" in blind.stderr
    vector = hermes(*chat(nobody, "-m", "gpt-4o", "--image", str(svg), "-q", "hi"))
    assert_clean_failure(vector, 2)
    assert "SVG" in vector.stderr
    missing = hermes(*chat(nobody, "-m", "gpt-4o", "--image", str(tmp_path / "no.png"), "-q", "x"))
    assert_clean_failure(missing, 2)
    assert "no such file" in missing.stderr
    many = [arg for _ in range(images.MAX_PER_MESSAGE + 1) for arg in ("--image", str(png))]
    too_many = hermes(*chat(nobody, "-m", "gpt-4o", *many, "-q", "x"))
    assert_clean_failure(too_many, 2)
    assert f"at most {images.MAX_PER_MESSAGE} images" in too_many.stderr
    folder = hermes(*chat(nobody, "-m", "gpt-4o", "--image", str(tmp_path), "-q", "x"))
    assert_clean_failure(folder, 2)
    assert "not a regular file" in folder.stderr
    # A refused image ends the run before any message: no empty session is left behind.
    from hermes_agent.state.db import StateDB

    db = StateDB()
    try:
        assert db.list_sessions() == []
    finally:
        db.close()


def test_repl_image_command_with_a_pasted_path(hermes_home: Path, tmp_path: Path) -> None:
    import pexpect

    from conftest import HERMES, clean_env

    dropped = tmp_path / "my photo.png"
    dropped.write_bytes(picture(64, 64))
    with ScriptedLLM([Reply("A red square."), Reply("Plain text.")]) as llm:
        child = pexpect.spawn(
            str(HERMES),
            chat(llm.openai_base_url, "-m", "gpt-4o"),
            env=clean_env(hermes_home, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1"),
            cwd=str(tmp_path),
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 160),
        )
        child.expect_exact("❯")
        child.sendline(f"/image '{dropped}'")
        child.expect_exact("attached my photo.png (64x64 PNG")
        child.expect_exact("❯")
        child.sendline("/image nothing-here.png")
        child.expect_exact("no such file")
        child.expect_exact("❯")
        child.sendline("what is it?")
        child.expect_exact("A red square.")
        child.expect_exact("❯")
        child.sendline("and now?")
        child.expect_exact("Plain text.")
        child.expect_exact("❯")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    assert received(llm.requests[0].body, "openai") == [("user", "image/png", (64, 64))]
    assert len(received(llm.requests[1].body, "openai")) == 1, "only the first message had it"


def test_prune_removes_only_images_no_row_refers_to(hermes: Any, hermes_home: Path) -> None:
    kept = images.ingest_bytes(picture(20, 20), name="kept.png")
    orphan = images.ingest_bytes(picture(21, 21), name="orphan.png")
    fresh = images.ingest_bytes(picture(22, 22), name="fresh.png")
    db = StateDB()
    sid = db.create_session(source="cli", model="gpt-4o", cwd=str(hermes_home))
    db.add_message(sid, images.attach({"role": "user", "content": "hi"}, [kept]))
    db.close()
    old = 1_000_000_000
    for ref in (kept, orphan):
        os.utime(home.image_path(ref.file_name), (old, old))
    db = StateDB()
    assert images.prune(db) == (1, orphan.size)
    assert not home.image_path(orphan.file_name).exists()
    assert home.image_path(kept.file_name).exists() and home.image_path(fresh.file_name).exists()
    db.close()
    result = hermes("sessions", "delete", sid, "--yes")
    assert result.returncode == 0, result.stderr
    assert "removed 1 stored image" in result.stdout
    assert not home.image_path(kept.file_name).exists()
    assert home.image_path(fresh.file_name).exists(), "younger than the grace period"


def test_mangled_images_fail_cleanly(hermes_home: Path) -> None:
    import random

    rng = random.Random(18)
    seeds = [picture(37, 23, fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP")]
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 16)]
        try:
            ref = images.ingest_bytes(bytes(data))
        except images.ImageError:
            continue
        assert ref.width >= 1 and images.load(ref)

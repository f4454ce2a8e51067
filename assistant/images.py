"""Images of a chat frame: checked (count, decoded size, type sniffed from the bytes), stored with the
turn, and given to the model as image content parts (docs/assistant.md, Limits)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from assistant import conf
from mejai.errors import ApiError

MAX_URL_CHARS = 2048
_DATA_URL = re.compile(r"^data:([a-zA-Z0-9.+/-]{1,64})?((?:;[a-zA-Z0-9=._-]{1,64})*);base64,", re.ASCII)


@dataclass(frozen=True)
class ImageIn:
    content_type: str  # sniffed, "" for a URL
    data: bytes | None
    url: str = ""


def image_type_sniff(data: bytes) -> str | None:
    """The image type the bytes are, whatever the sender claimed: png, jpeg, webp or gif."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _error(code: str, ko: str, en: str, *, index: int | None = None) -> ApiError:
    extra = {"index": index} if index is not None else {}
    return ApiError(code, f"{ko} ({en})", 400, field="images", extra=extra)


def images_validate(raw) -> list[ImageIn]:
    """The images of a chat frame, or an ApiError naming the first problem (nothing is stored then)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _error("invalid", "images는 목록이어야 합니다.", "images must be a list.")
    limit = conf.max_images()
    if len(raw) > limit:
        raise _error("too_many_images", f"이미지는 최대 {limit}장까지 보낼 수 있습니다.", f"At most {limit} images.")
    max_bytes = conf.max_image_bytes()
    images = []
    for index, value in enumerate(raw):
        if not isinstance(value, str):
            raise _error("image_invalid", "이미지는 data URL이나 https URL입니다.",
                         "An image is a data URL or an https URL.", index=index)
        if value.startswith("data:"):
            match = _DATA_URL.match(value[:200])
            if not match:
                raise _error("image_invalid", "base64 data URL만 받습니다.", "Only base64 data URLs are accepted.",
                             index=index)
            encoded = value[match.end():]
            # Decoded size from the encoded length, before decoding anything big.
            if len(encoded) * 3 // 4 - encoded.count("=", -2) > max_bytes:
                raise _error("image_too_large", f"이미지가 너무 큽니다 (최대 {max_bytes // 1_000_000} MB).",
                             f"The image is larger than {max_bytes} bytes.", index=index)
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise _error("image_invalid", "이미지의 base64가 올바르지 않습니다.", "The image's base64 is invalid.",
                             index=index) from None
            if len(data) > max_bytes:
                raise _error("image_too_large", f"이미지가 너무 큽니다 (최대 {max_bytes // 1_000_000} MB).",
                             f"The image is larger than {max_bytes} bytes.", index=index)
            kind = image_type_sniff(data)
            if kind is None:
                raise _error("image_type", "PNG, JPEG, WebP, GIF 이미지만 받습니다.",
                             "Only PNG, JPEG, WebP and GIF images are accepted.", index=index)
            images.append(ImageIn(content_type=kind, data=data))
        else:
            parts = urlsplit(value) if len(value) <= MAX_URL_CHARS else None
            if parts is None or parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in value):
                raise _error("image_invalid", "이미지는 data URL이나 https URL입니다.",
                             "An image is a data URL or an https URL.", index=index)
            images.append(ImageIn(content_type="", data=None, url=value))
    return images


def images_store(*, turn, images: list[ImageIn]) -> None:
    from assistant.models import TurnImage

    TurnImage.objects.bulk_create([
        TurnImage(turn=turn, position=i, content_type=img.content_type, size=len(img.data or b""),
                  data=img.data, url=img.url)
        for i, img in enumerate(images)
    ], ignore_conflicts=True)


def image_parts_for_turn(*, turn) -> list[dict] | None:
    """The runtime's user-parts provider: the turn's images as OpenAI `image_url` content parts."""
    from assistant.models import TurnImage
    from runtime.models import Channel

    session = turn.session
    if session.channel != Channel.ASSISTANT:
        return None
    parts = []
    for image in TurnImage.objects.filter(turn=turn).order_by("position"):
        if image.url:
            url = image.url
        else:
            url = f"data:{image.content_type};base64,{base64.b64encode(bytes(image.data)).decode()}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts

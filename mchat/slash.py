"""Custom slash commands (`POST /mchat/commands`): verify the per-command token in constant time, store the
command as a turn, answer ephemerally within a few seconds, else acknowledge and post the answer later
through `response_url` (only back to the bot's own Mattermost server)."""

from __future__ import annotations

import asyncio
import hmac
import logging
from urllib.parse import urlsplit

import httpx
from asgiref.sync import sync_to_async

from mchat import conf, services
from mchat.clients.mattermost import MattermostClient, MattermostError
from mchat.models import ChannelMapping, MattermostBot, UserMapping
from mejai.errors import ApiError
from runtime.background import aturn_answer_within, turn_answer_background
from runtime.commands import command_match
from runtime.models import Channel
from runtime.services import session_create, turn_start

logger = logging.getLogger("mchat.slash")

WORKING_TEXT = "⏳ 처리하고 있어요. 끝나면 여기에 알려 드릴게요. (Working on it; the answer will follow here.)"
ERROR_TEXT = "죄송해요, 지금은 답변을 드리기 어려워요. 잠시 후 다시 해 주세요. (Sorry, I could not answer just now.)"
HELP_TEXT = "사용법: /remember 내용, /search 검색어, /memory, /forget 번호, 또는 질문을 적어 주세요. (Usage: …)"
FIELDS = ("token", "team_id", "channel_id", "user_id", "user_name", "command", "text", "response_url", "trigger_id")
_later: set[asyncio.Task] = set()


def bot_for_token(token: str) -> MattermostBot:
    """The bot whose slash-command token this is, compared in constant time with every configured token."""
    if not token:
        raise ApiError("unauthenticated", "The slash command token is missing.", 401)
    found = None
    for bot in MattermostBot.objects.select_related("organization", "agent").filter(is_active=True):
        for candidate in bot.slash_command_tokens or []:
            if hmac.compare_digest(str(candidate).encode(), token.encode()) and found is None:
                found = bot
    if found is None:
        raise ApiError("forbidden", "The slash command token is not valid.", 403)
    return found


def response_url_allowed(*, bot: MattermostBot, url: str) -> bool:
    """Only back to the bot's own server (a forged response_url must not make us call elsewhere)."""
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and parts.netloc.lower() == bot.server_host


def _command_text(command: str, text: str) -> str:
    word = (command or "").strip().lstrip("/").split()[0] if (command or "").strip() else ""
    candidate = f"/{word} {text}".strip()
    if word and command_match(candidate, channel=Channel.MCHAT):
        return candidate
    return (text or "").strip()


def _turn_for(*, bot: MattermostBot, form: dict, user: dict | None):
    mapping = UserMapping.objects.select_related("end_user").filter(bot=bot, mchat_user_id=form["user_id"]).first()
    if mapping is None:
        if user is None:
            raise ApiError("user_unknown", "The Mattermost user could not be read.", 502)
        mapping = services.user_mapping_resolve(bot=bot, user=user)
    text = _command_text(form.get("command", ""), form.get("text", ""))
    if not text:
        return None
    channel = ChannelMapping.objects.filter(bot=bot, mchat_channel_id=form.get("channel_id", ""),
                                            channel_type=ChannelMapping.Type.DIRECT).select_related("session").first()
    session = channel.session if channel is not None and channel.session_id else None
    if session is None:
        session = session_create(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT,
                                 end_user=mapping.end_user,
                                 metadata={"mchat_bot_id": bot.pk, "mchat_channel_id": form.get("channel_id", ""),
                                           "mchat_user_id": form["user_id"], "mchat_slash_command": True})
    turn, _ = turn_start(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT, text=text,
                         session=session, end_user=mapping.end_user,
                         client_message_id=(form.get("trigger_id") or "")[:128],
                         idempotency_scope=f"mchat-slash:{bot.pk}")
    return turn


def _outcome_text(outcome) -> str:
    if outcome is not None and outcome.ok:
        return outcome.payload.get("message") or ERROR_TEXT
    return ERROR_TEXT


async def slash_command(*, form: dict) -> dict:
    """The JSON answer to Mattermost: {"response_type": "ephemeral", "text"}; raises ApiError for bad input."""
    form = {name: str(form.get(name) or "")[:4000] for name in FIELDS}
    bot = await sync_to_async(bot_for_token)(form["token"])
    if not form["user_id"] or not form["channel_id"]:
        raise ApiError("invalid", "user_id and channel_id are required.", 400)
    user = None
    if not await sync_to_async(UserMapping.objects.filter(bot=bot, mchat_user_id=form["user_id"]).exists)():
        client = MattermostClient(base_url=bot.server_url, token=bot.token, verify_tls=bot.verify_tls,
                                  ca_bundle_path=bot.ca_bundle_path, retries=1)
        try:
            user = await client.user(form["user_id"])
        except MattermostError as exc:
            logger.warning("slash command: cannot read user %s (%s)", form["user_id"], exc.status)
        finally:
            await client.aclose()
    turn = await sync_to_async(_turn_for)(bot=bot, form=form, user=user)
    if turn is None:
        return {"response_type": "ephemeral", "text": HELP_TEXT}
    can_follow_up = response_url_allowed(bot=bot, url=form["response_url"])
    budget = conf.slash_sync_seconds() if can_follow_up else 25.0
    outcome = await aturn_answer_within(turn_id=turn.pk, seconds=budget)
    if outcome is not None:
        return {"response_type": "ephemeral", "text": _outcome_text(outcome)}
    if not can_follow_up:
        return {"response_type": "ephemeral", "text": WORKING_TEXT}
    task = asyncio.create_task(_deliver_later(turn_id=turn.pk, url=form["response_url"], verify=bot.verify_tls))
    _later.add(task)
    task.add_done_callback(_later.discard)
    return {"response_type": "ephemeral", "text": WORKING_TEXT}


async def _deliver_later(*, turn_id, url: str, verify: bool) -> None:
    outcome = await asyncio.wrap_future(turn_answer_background(turn_id=turn_id))
    body = {"response_type": "ephemeral", "text": _outcome_text(outcome)}
    async with httpx.AsyncClient(timeout=10, verify=verify) as client:
        for attempt in range(3):
            try:
                response = await client.post(url, json=body)
                if response.status_code < 500:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5 * (2 ** attempt))
    logger.warning("slash command: the answer of turn %s could not be posted to response_url", turn_id)

"""Bench entry point: the project's ASGI application with kakao.asgi.KakaoSkillAdmission in front,
as proposed for mejai/asgi.py (`daphne bench.kakao_guarded_asgi:application`)."""

from kakao.asgi import KakaoSkillAdmission
from mejai.asgi import application as _application

application = KakaoSkillAdmission(_application)

"""Keep secrets (HF_TOKEN, WANDB_API_KEY, ...) out of logs and state: invariant 8.

Logs are written line by line, so a secret whose value spans lines (a PEM key, a service-account JSON) never
appears whole in one line: each of its lines is a secret of its own, in the form written and in the form JSON
escapes it to (``\\n`` inside a string).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE
)
MASK = "***"
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words
_LINE_BREAKS = re.compile(r"\r\n|\r|\n|\\r\\n|\\n|\\r")  # real ones, and JSON's spelling of them


class Redactor:
    """Masks the values of secret-named variables wherever they appear in text."""

    def __init__(self, environments: Iterable[Mapping[str, str]] = ()) -> None:
        self._secrets: set[str] = set()
        self._ordered: list[str] = []
        self.learn(os.environ)
        for env in environments:
            self.learn(env)

    def learn(self, env: Mapping[str, str]) -> None:
        for name, value in env.items():
            if SECRET_NAME.search(name):
                self._add(value)
        self._ordered = sorted(self._secrets, key=len, reverse=True)  # the whole value before its lines

    def _add(self, value: str) -> None:
        for form in (value, json.dumps(value, ensure_ascii=False)[1:-1]):
            for piece in (form, *(line.strip() for line in _LINE_BREAKS.split(form))):
                if len(piece) >= _MIN_SECRET_LEN:
                    self._secrets.add(piece)

    def text(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def env_for_log(self, env: Mapping[str, str]) -> dict[str, str]:
        """An env mapping safe to log: secret-named values masked."""
        return {k: (MASK if SECRET_NAME.search(k) else self.text(v)) for k, v in env.items()}

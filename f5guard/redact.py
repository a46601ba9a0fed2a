"""Keep secrets (HF_TOKEN, WANDB_API_KEY, ...) out of logs and state: invariant 8."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|APIKEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE
)
MASK = "***"
_MIN_SECRET_LEN = 6  # shorter values would mask ordinary words


class Redactor:
    """Masks the values of secret-named variables wherever they appear in text."""

    def __init__(self, environments: Iterable[Mapping[str, str]] = ()) -> None:
        self._secrets: set[str] = set()
        self.learn(os.environ)
        for env in environments:
            self.learn(env)

    def learn(self, env: Mapping[str, str]) -> None:
        for name, value in env.items():
            if SECRET_NAME.search(name) and len(value) >= _MIN_SECRET_LEN:
                self._secrets.add(value)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def env_for_log(self, env: Mapping[str, str]) -> dict[str, str]:
        """An env mapping safe to log: secret-named values masked."""
        return {k: (MASK if SECRET_NAME.search(k) else self.text(v)) for k, v in env.items()}

"""The NaN guard inside the trainer: a loss that stays non-finite, or a parameter that is, stops training before a
save could put the damage into a checkpoint.

fp16 goes NaN on F5-TTS (SWivid/F5-TTS#341, #790): the loss turns nan, the optimizer spreads it into every
weight, and each later save writes a checkpoint full of NaN that sync would publish and resume would pick. So:
the loss is looked at every update (a Python float: free); ``nan_patience`` non-finite losses in a row stop the
trainer (fp16's loss scaler skips an overflowing step by itself; several in a row are no longer an accident);
and the parameters are looked at before every save, F5-TTS's own included (a sum per tensor of model and EMA:
milliseconds on a GPU; bench/nanguard_bench.py, figures in docs/reliability.md). Either stops it WITHOUT saving,
and the trainer's exit event says ``nonfinite``, the update and the learning rate; the daemon restarts it in a
safer precision.

``F5GUARD_TEST_NAN="update=N[,precision=bf16/fp16/no]"`` makes the loss non-finite from update N on (under the
named precisions only, so a test can prove that a safer one recovers): the real loss times NaN, so the gradients,
the optimizer and the weights go NaN exactly as a real divergence takes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

TEST_NAN_ENV = "F5GUARD_TEST_NAN"
LOSS = "a non-finite loss"
PARAMETERS = "non-finite parameters"


class NonFinite(Exception):
    """Training went non-finite: stop without saving. ``update`` is where it went (the first non-finite loss of
    the run that stopped it, else the update whose save found the parameters broken)."""

    def __init__(self, what: str, update: int | None, lr: float | None, how: str) -> None:
        super().__init__(f"{what} at update {update} ({how}, learning rate {lr})")
        self.what = what  # the exit event's detail: a few words the daemon's status line quotes
        self.update = update
        self.lr = lr


class LossWatch:
    """Counts non-finite losses in a row; remembers where the current run of them began."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.in_row = 0
        self.first: tuple[int, float | None] | None = None  # (update, lr) of the first of the current run

    def see(self, update: int, loss: float, lr: float | None) -> None:
        """Raise NonFinite once ``patience`` losses in a row were NaN or infinite."""
        if math.isfinite(loss):
            self.in_row, self.first = 0, None
            return
        self.in_row += 1
        if self.first is None:
            self.first = (update, lr)
        if self.in_row >= self.patience:
            raise NonFinite(LOSS, *self.first, how=f"{loss}, {self.in_row} updates in a row")

    def broken_parameters(self, update: int, lr: float | None, name: str) -> NonFinite:
        """What a save that found ``name`` non-finite reports: the loss that broke it, when there was one."""
        if self.first is not None:
            return NonFinite(LOSS, *self.first, how=f"then {PARAMETERS} ({name}) at the save of update {update}")
        return NonFinite(PARAMETERS, update, lr, how=f"{name}, found at the save of update {update}")


def nonfinite_parameter(trainer: Any) -> str | None:
    """The name of the first parameter of the model or its EMA holding a NaN or an infinity; None when all are
    finite. Fast path: one sum per tensor (a NaN or an infinity makes it non-finite), one device sync for all;
    only a tensor whose sum is not finite is looked at element by element (a sum of finite values may overflow).
    A sum reads each weight once; ``isfinite().all()`` writes a mask first: 15x slower on a CPU (bench)."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    named = list(model.named_parameters())
    ema = getattr(getattr(trainer, "ema_model", None), "ema_model", None)  # ema_pytorch's copy (main rank only)
    if ema is not None:
        named += [(f"ema.{name}", p) for name, p in ema.named_parameters()]
    if not named:
        return None
    with torch.no_grad():
        device = named[0][1].device
        sums = torch.stack([p.sum().float().to(device) for _, p in named])
        suspects = (~torch.isfinite(sums)).nonzero().flatten().tolist()
        for index in suspects:
            name, tensor = named[index]
            if not bool(torch.isfinite(tensor).all()):
                return str(name)
    return None


@dataclass(frozen=True)
class TestNan:
    """F5GUARD_TEST_NAN: the loss is non-finite from ``update`` on, under ``precisions`` (empty: under all)."""

    update: int
    precisions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> TestNan | None:
        if not text:
            return None
        wrong = ValueError(f"{TEST_NAN_ENV} must look like 'update=N[,precision=bf16/no]', got {text!r}")
        try:
            fields = dict(part.split("=", 1) for part in text.split(","))
            update = int(fields["update"])
        except (KeyError, ValueError) as err:
            raise wrong from err
        if set(fields) - {"update", "precision"}:
            raise wrong
        return cls(update, tuple(p for p in fields.get("precision", "").split("/") if p))

    def install(self, trainer: Any, precision: str, next_update: Any) -> None:
        """Multiply the model's loss by NaN for every update from ``self.update`` on (``next_update()``: the
        update the forward pass belongs to), when training runs in one of the named precisions."""
        if self.precisions and precision not in self.precisions:
            return
        model = trainer.accelerator.unwrap_model(trainer.model)

        def poison(_module: Any, _args: Any, output: Any) -> Any:
            if next_update() < self.update or not isinstance(output, tuple):
                return None
            return (output[0] * math.nan, *output[1:])  # CFM.forward returns (loss, cond, pred)

        model.register_forward_hook(poison)

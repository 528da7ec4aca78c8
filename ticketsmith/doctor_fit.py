"""Whether the served model fits the GPU: the one verdict of `ticketsmith doctor` that weighs numbers.

Made from what llama.cpp reported after the load, so it is pure and tested without a GPU: the VRAM
free now plus what the weights already hold there is what the whole model could have. It ignores the
KV cache of layers still on the CPU, so a `fits` near the limit is an estimate. On a box without a
GPU llama.cpp can use, the answer is CPU inference: a way to run, not a failure."""

from ticketsmith.doctor_report import GpuCard, GpuFit

MIB = 1024 * 1024


def _mib(size: float) -> str:
    return f"{size / MIB:,.0f} MiB"


def gpu_fit(
    gpus: list[GpuCard],
    gpu_offload: bool,
    offloaded: int,
    total_layers: int,
    model_bytes: int,
    weights_mib: dict[str, float],
) -> GpuFit:
    usable = [card for card in gpus if card.source == "llama.cpp"]
    if not gpu_offload or not usable:
        unusable = [card for card in gpus if card.source == "nvidia-smi"]
        if unusable:
            return GpuFit(
                verdict="cpu",
                fits=None,
                note=f"no GPU: CPU inference (this llama.cpp build cannot use the {unusable[0].name} here: "
                "rebuild it with `make gpu`)",
            )
        return GpuFit(verdict="cpu", fits=None, note="no GPU: CPU inference")
    names = {card.name for card in usable}
    on_gpu = sum(mib for buffer, mib in weights_mib.items() if buffer in names) * MIB
    free = sum(card.free_bytes or 0 for card in usable)
    capacity = free + on_gpu
    fits = model_bytes <= capacity
    where = usable[0].name if len(usable) == 1 else f"{len(usable)} GPUs"
    if offloaded >= total_layers:
        return GpuFit(
            verdict="fits", fits=True, note=f"fits: all {total_layers} layers on {where}, {_mib(free)} VRAM left"
        )
    room = f"the model ({_mib(model_bytes)}) {'would fit' if fits else 'would not fit'} in {_mib(capacity)}"
    if offloaded == 0:
        hint = ": set n_gpu_layers: -1" if fits else ""
        return GpuFit(verdict="not_offloaded", fits=fits, note=f"no layers on {where}; {room}{hint}")
    return GpuFit(
        verdict="partial", fits=fits, note=f"{offloaded}/{total_layers} layers on {where}, the rest on the CPU; {room}"
    )

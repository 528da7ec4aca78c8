"""`ticketsmith doctor`'s run: the checks in order, each section handed on as soon as it is known, and
the exit code the report ends with.

The order is chosen for the operator reading it. The model file is checked first but printed second:
a missing model (the commonest mistake) is then a one-line error before anything loads, and the build
still comes first on the screen. llama.cpp loads the model only after the build is shown, since a
build for another CPU crashes there."""

from collections.abc import Callable

from ticketsmith.doctor_checks import (
    TriagerLoader,
    build_info,
    load,
    model_file,
    offload_info,
    sample_triage,
    serving_info,
)
from ticketsmith.doctor_render import Section
from ticketsmith.doctor_report import DoctorReport
from ticketsmith.runtime.errors import TicketsmithError
from ticketsmith.runtime.settings import RuntimeSettings

CONFIG_EXIT = 2  # the model or the settings are wrong: like every other command's config errors
TRIAGE_EXIT = 1  # everything loaded, but the sample ticket did not triage
Emit = Callable[[Section], None]


def failed(report: DoctorReport, exit_code: int, exc: BaseException) -> DoctorReport:
    reason = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the message held
    return report.model_copy(update={"ok": False, "exit_code": exit_code, "error": reason})


def diagnose(settings: RuntimeSettings, loader: TriagerLoader, emit: Emit, keep_loaded: bool = False) -> DoctorReport:
    """Run every check with `settings`; `loader` loads the model (the real `Triager`). The model is
    closed at the end unless `keep_loaded` (the caller owns it: a test's session model)."""
    report = DoctorReport()
    try:
        model = model_file(settings)
        report.build = build_info()
        emit(report.build)
        report.model = model
        emit(model)
        loaded = load(settings, loader)
    except (TicketsmithError, OSError) as exc:
        return failed(report, CONFIG_EXIT, exc)
    try:
        report.serving = serving_info(loaded.triager)
        emit(report.serving)
        report.offload = offload_info(loaded, report.build, model)
        emit(report.offload)
        try:
            report.sample = sample_triage(loaded.triager)
        except Exception as exc:  # the doctor reports any failure of the real path, never a traceback
            return failed(report, TRIAGE_EXIT, exc)
        emit(report.sample)
    finally:
        if not keep_loaded:
            loaded.triager.close()
    return report.model_copy(update={"ok": True, "exit_code": 0})

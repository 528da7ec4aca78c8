"""The Triager: raw ticket text in, validated TriageResult out, one loaded model reused throughout."""

import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ticketsmith.runtime.decoder import DecodedAnswer, DecodeStats, GuidedDecoder
from ticketsmith.runtime.engine import LlamaEngine
from ticketsmith.runtime.errors import ConfigError, DecodingError, ModelError, TicketError
from ticketsmith.runtime.fusion import FieldParts, TicketPriors
from ticketsmith.runtime.grammar import compile_grammar
from ticketsmith.runtime.grammar_check import GrammarState, grammar_accepts
from ticketsmith.runtime.label_head import LabelHead, head_taxonomy
from ticketsmith.runtime.model_manifest import GGUF_KEYS, check_compatible
from ticketsmith.runtime.prompt import (
    FULL_PROMPT,
    PROMPT_VERSIONS,
    TICKET_TOKENS,
    EncodedPrompt,
    PromptBuilder,
    PromptEncoder,
)
from ticketsmith.runtime.schema import FieldConfidence, Ticket, TriageError, TriageObserver, TriageResult
from ticketsmith.runtime.served_model import ServedModel, resolve
from ticketsmith.runtime.settings import RuntimeSettings
from ticketsmith.runtime.taxonomy import LabelField, load_taxonomy

MIN_TEXT_TOKENS = 64
UNTRAINED_REASON = (
    "the model is not trained for this taxonomy (no label head, no ticketsmith training keys): "
    "every answer is a guess and goes to review; train one with `ticketsmith train --head-only`"
)


@dataclass(frozen=True)
class TriageOutcome:
    """A triage result with each field's decision as the LLM, the head and their fusion saw it."""

    result: "TriageResult"
    parts: dict[str, FieldParts]


@dataclass(frozen=True)
class ReadTicket:
    """What the model answered for one ticket, before review rules and ids make it a TriageResult."""

    answer: DecodedAnswer
    ticket: Ticket
    prompt: EncodedPrompt


@dataclass(frozen=True)
class TicketInput:
    text: str
    id: str | int | None = None


@dataclass(frozen=True)
class LlmTraining:
    """What a model's metadata says of its training: for this taxonomy or not, and its prompt."""

    trained: bool
    prompt_version: str
    ticket_tokens: int


def _ticket_tokens(where: Path, recorded: str) -> int:
    """The ticket token budget a model's metadata records: a model served with another would read
    tickets cut differently from those it learned on."""
    if not recorded.isdigit() or int(recorded) < MIN_TEXT_TOKENS:
        raise ModelError(f"{where}: its ticket token budget {recorded!r} is not a whole number >= {MIN_TEXT_TOKENS}")
    return int(recorded)


class Triager:
    """Thread-safe: one model and one KV cache, so concurrent callers (the worker loop, the HTTP API)
    take turns. Observers hear of every triage: its seconds and its result (None when it failed)."""

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self.observers: list[TriageObserver] = []
        self._closed = False
        self._lock = threading.Lock()
        served = resolve(settings.model_path)
        taxonomy_path = settings.taxonomy_path
        if served.taxonomy is not None and "taxonomy_path" not in settings.model_fields_set:
            taxonomy_path = served.taxonomy  # a run folder is served with the taxonomy it was trained for
        self.taxonomy = load_taxonomy(taxonomy_path)
        self.head = self._load_head(served)
        self.grammar = compile_grammar(self.taxonomy)
        self.model_path = served.gguf
        largest_set = max(len(labels) for labels in self._label_sets())
        self.engine = LlamaEngine(
            self.model_path,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
            n_seq_max=2 + largest_set,  # sequence 0, one per label being scored, one to set an answer aside
            n_ubatch=settings.n_ubatch,
            lora_path=settings.lora_path,
            flash_attn=settings.flash_attn,
            extra_buffers=settings.cpu_extra_buffers,
        )
        training = self._check_trained_for_this_setup()
        self.llm_trained = training.trained
        self.trained_fields = [f for f in self.taxonomy.fields if self._knows(f)]
        self.thresholds = self._review_thresholds()
        if largest_set + 2 > self.engine.n_seq_max:
            raise ConfigError(f"a field has {largest_set} labels; llama.cpp scores at most {self.engine.n_seq_max - 2}")
        GrammarState(self.engine, self.grammar).close()  # llama.cpp must compile it: fail at start-up
        builder = PromptBuilder(
            self.taxonomy, self.engine.metadata("tokenizer.chat_template"), version=training.prompt_version
        )
        self.encoder = PromptEncoder(builder.parts(), self.engine.tokenize, training.ticket_tokens)
        self.prompt_version = self.encoder.version
        self._prefix, self._suffix = self.encoder.prefix, self.encoder.suffix
        self.decoder = GuidedDecoder(
            self.engine,
            self.taxonomy,
            settings.max_summary_tokens,
            settings.label_search,
            one_sentence=settings.summary_one_sentence,
        )
        if self.decoder.largest_batch() > self.engine.n_batch:
            raise ConfigError("the taxonomy's labels need a larger batch than llama.cpp was given; shorten them")
        self.text_budget = self.engine.n_ctx - len(self._prefix) - len(self._suffix) - self.decoder.max_answer_tokens
        if self.text_budget < MIN_TEXT_TOKENS:
            needed = self.engine.n_ctx - self.text_budget + MIN_TEXT_TOKENS
            raise ConfigError(
                f"n_ctx={self.engine.n_ctx} leaves no room for ticket text; set n_ctx to at least {needed}"
            )

    def _load_head(self, served: ServedModel) -> LabelHead | None:
        if served.head is None:
            return None
        if served.head_is_default and head_taxonomy(served.head) != self.taxonomy.fingerprint():
            return None  # the shipped head knows the default taxonomy only: another one is served untrained
        return LabelHead(served.head, self.taxonomy)

    def _check_trained_for_this_setup(self) -> LlmTraining:
        """Refuse a model trained for another setup; says whether the LLM was trained for this one
        and with which prompt it must be served (the full one for a model that records none)."""
        sources = [(self.model_path, self.engine.metadata)]
        if self.settings.lora_path is not None:
            sources.append((self.settings.lora_path, self.engine.lora_metadata))
        trained, prompts, budget = False, set(), TICKET_TOKENS
        for where, read in sources:
            fingerprint, prompt = read(GGUF_KEYS["taxonomy_fingerprint"]), read(GGUF_KEYS["prompt_version"])
            check_compatible(where, fingerprint, prompt, self.taxonomy.fingerprint(), PROMPT_VERSIONS)
            trained = trained or fingerprint is not None
            prompts |= {prompt} if prompt is not None else set()
            recorded = read(GGUF_KEYS["ticket_tokens"])
            if recorded is not None:  # the LoRA's, read last, is what was trained
                budget = _ticket_tokens(where, recorded)
        if len(prompts) > 1:
            raise ModelError(f"{self.model_path} and its LoRA were trained with different prompts: {sorted(prompts)}")
        return LlmTraining(trained, prompts.pop() if prompts else FULL_PROMPT, budget)

    def _knows(self, field: LabelField) -> bool:
        """Whether a trained part predicts `field`, or the taxonomy leaves it no choice."""
        if self.llm_trained or (self.head is not None and field in self.head.fields):
            return True
        if field == "subcategory":
            return all(len(c.subcategories) == 1 for c in self.taxonomy.categories)
        return len(self.taxonomy.choices(field)) == 1

    def _review_thresholds(self) -> dict[str, float]:
        """The configured thresholds; a head's fields take the head's (fitted for its target
        precision) unless the configuration sets review_thresholds itself."""
        thresholds = self.settings.review_thresholds.model_dump()
        if self.head is not None and "review_thresholds" not in self.settings.model_fields_set:
            thresholds.update({f: spec.review_threshold for f, spec in self.head.fields.items()})
        return thresholds

    def _label_sets(self) -> list[tuple[str, ...]]:
        sets = [self.taxonomy.choices(f) for f in self.taxonomy.fields if f != "subcategory"]
        if "subcategory" in self.taxonomy.fields:
            sets += [self.taxonomy.choices("subcategory", c.name) for c in self.taxonomy.categories]
        return sets

    def model_info(self) -> dict[str, str]:
        """What is being served: the model file, the taxonomy fingerprint, the prompt version, the head."""
        info = {
            "model": self.model_path.name,
            "taxonomy": self.taxonomy.fingerprint(),
            "prompt_version": self.prompt_version,
        }
        if self.head is not None:
            info["head"] = f"{self.head.folder.name}:{self.head.manifest.data_sha256[:12]}"
        return info

    def model_label(self) -> str:
        """`model_info` in one line, as audit records carry it."""
        info = self.model_info()
        head = f" head={info['head']}" if "head" in info else ""
        return f"{info['model']} taxonomy={info['taxonomy']} {info['prompt_version']}{head}"

    @property
    def fixed_prefix_length(self) -> int:
        """Tokens before the ticket text: the same for every ticket, their KV cache is reused."""
        return len(self._prefix)

    def warm_up(self) -> None:
        """Evaluate the fixed prompt prefix now, so that the first ticket costs no more than the rest."""
        with self._lock:
            self.decoder.feed_prompt(self._prefix + self._suffix, self.fixed_prefix_length, DecodeStats())

    @property
    def loaded(self) -> bool:
        """Whether the model can triage: False once closed (the HTTP side's /healthz then says 503)."""
        return not self._closed

    def close(self) -> None:
        self._closed = True
        self.engine.close()

    def encode_ticket(self, text: str) -> EncodedPrompt:
        """The prompt's tokens for `text`, cut to the model's ticket token budget."""
        return self.encoder.encode(text, self.text_budget)

    def read_ticket(self, text: str) -> ReadTicket:
        """The model's answer for `text`; its tokens must be a sentence of the compiled grammar (checked by
        llama.cpp's grammar engine) and its bytes must parse as strict UTF-8 JSON into a valid Ticket."""
        prompt = self.encode_ticket(text)
        priors = TicketPriors(self.head, text) if self.head is not None else None
        answer = self.decoder.decode(prompt.tokens, self.fixed_prefix_length, priors)
        if not grammar_accepts(self.engine, self.grammar, answer.answer_tokens):
            raise DecodingError("the decoded answer is not a sentence of the grammar; this is a bug, please report it")
        raw = b"".join(self.engine.token_bytes(t) for t in answer.answer_tokens)
        try:
            ticket = Ticket.model_validate_json(raw.decode("utf-8"), context={"taxonomy": self.taxonomy})
        except (UnicodeDecodeError, ValidationError) as exc:
            raise DecodingError(f"the model's answer does not validate: {exc}") from None
        return ReadTicket(answer, ticket, prompt)

    def triage(self, text: str, ticket_id: str | int | None = None) -> TriageResult:
        return self.triage_with_parts(text, ticket_id).result

    def triage_with_parts(self, text: str, ticket_id: str | int | None = None) -> TriageOutcome:
        started = time.perf_counter()
        outcome = None
        try:
            with self._lock:
                outcome = self._triage(text, ticket_id)
            return outcome
        finally:
            for observer in self.observers:
                observer(time.perf_counter() - started, outcome.result if outcome else None)

    def _triage(self, text: str, ticket_id: str | int | None) -> TriageOutcome:
        read = self.read_ticket(text)
        answer, ticket = read.answer, read.ticket
        if self.trained_fields:
            scored = ["summary", *self.trained_fields]
            review = [name for name in scored if answer.confidence[name] < self.thresholds[name]]
            reason = None
        else:
            review, reason = list(self.taxonomy.fields), UNTRAINED_REASON
        result = {
            **ticket.model_dump(),
            "summary": ticket.summary.strip(),
            "id": ticket_id,
            "confidence": FieldConfidence(**answer.confidence),
            "overall_confidence": min(answer.confidence[f] for f in self.taxonomy.fields),
            "needs_review": bool(review) or reason is not None,
            "review_fields": review,
            "review_reason": reason,
            "untrained_fields": [f for f in self.taxonomy.fields if f not in self.trained_fields],
            "truncated": read.prompt.truncated,
            "input_tokens": read.prompt.text_tokens,
        }
        validated = TriageResult.model_validate(result, context={"taxonomy": self.taxonomy})
        return TriageOutcome(validated, answer.parts)

    def triage_many(self, tickets: Iterable[TicketInput | TriageError]) -> Iterator[TriageResult | TriageError]:
        """Triage a stream; an input that fails (or arrives as an error) yields a TriageError line."""
        for item in tickets:
            if isinstance(item, TriageError):
                yield item
                continue
            try:
                yield self.triage(item.text, item.id)
            except (TicketError, DecodingError) as exc:
                yield TriageError(id=item.id, error=str(exc))

"""Grammar-guided decoding with confidences from the model's own token probabilities.

The answer layout is fixed (answer_format), so the decoder walks it instead of sampling every
character. Only the summary is generated token by token, under the grammar's string rules
(runtime/json_string) and bounded in tokens and characters. Each label field takes one batched
evaluation: the forced tokens before it (the previous label's tail, the JSON key) plus the branching
nodes of the field's label trie, every node in the sequences of the labels below it.

Confidence of a label field = the probability of the chosen label under the grammar-constrained
model: the product, over the label's tokens (and the scaffolding token that ends it), of the
model's softmax probability renormalised over the tokens the grammar allows at that point. These
probabilities sum to 1 over the allowed labels. The label with the highest one is chosen (an exact
search over the label trie, not a greedy token walk). The subcategory's competitors are the chosen
category's subcategories; the category itself may give way to a rival (`_category_and_subcategory`).

With a label head (runtime/fusion), each decision is made on the fused distribution instead, which is
then the field's confidence; the LLM's own distribution is kept beside it for `eval`."""

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ticketsmith.runtime.answer_format import AnswerLayout
from ticketsmith.runtime.engine import BatchItem, LlamaEngine
from ticketsmith.runtime.errors import DecodingError
from ticketsmith.runtime.fusion import FieldParts, FieldPrior, TicketPriors
from ticketsmith.runtime.json_string import BOUNDARY, Step, StringState, advance
from ticketsmith.runtime.label_trie import LabelTrie
from ticketsmith.runtime.options import LabelSearch
from ticketsmith.runtime.schema import SUMMARY_MAX_CHARS
from ticketsmith.runtime.taxonomy import LabelField, Taxonomy

CHARACTER_TAIL_TOKENS = 5  # the most tokens past the summary's bound that finish a \u escape: u and 4 digits


@dataclass
class DecodeStats:
    forward_passes: int = 0
    sampled_tokens: int = 0
    forced_tokens: int = 0  # answer tokens not sampled: the scaffolding and the labels
    prompt_tokens_evaluated: int = 0
    rival_categories_scored: int = 0  # see `_category_and_subcategory`
    rival_categories_chosen: int = 0


@dataclass
class ScoredLabels:
    """One label batch: every label's log-probability under the grammar and the best label."""

    trie: LabelTrie
    log_probs: npt.NDArray[np.float64]  # what the decision is made on: fused with the head's, if any
    llm_log_probs: npt.NDArray[np.float64]  # the LLM's alone, under the grammar
    prior: FieldPrior | None
    first_logits: npt.NDArray[np.float32]  # before the labels' first token
    start: int  # the position of the labels' first token
    sequences: tuple[int, ...]  # the labels' sequences, alive until `_keep`
    best: int
    evaluated: int  # how many of the best label's tokens the batch evaluated

    def probability(self, index: int) -> float:
        return float(np.exp(self.log_probs[index]))  # the labels' probabilities sum to 1

    def parts(self) -> FieldParts:
        head = self.prior.head_log_probs if self.prior is not None else None
        return FieldParts(tuple(self.trie.labels), self.llm_log_probs, head, self.log_probs)

    @property
    def confidence(self) -> float:
        return self.probability(self.best)


@dataclass
class CategoryPair:
    """A category, its best subcategory and how probable the model finds the two together."""

    category: int  # index in the category trie
    subcategory: ScoredLabels
    log_score: float
    tail: list[int]  # the subcategory's tokens still to be evaluated


@dataclass
class DecodedAnswer:
    """The answer's tokens (the Triager parses them into the ticket) and each field's confidence."""

    confidence: dict[str, float]
    answer_tokens: list[int]
    stats: DecodeStats = field(default_factory=DecodeStats)
    parts: dict[str, FieldParts] = field(default_factory=dict)


def opens_sentence(text: str, piece: str) -> bool:
    """Whether `piece` starts a second sentence after `text` (whose last token may carry the space)."""
    stripped = text.rstrip()
    return stripped.endswith((".", "!", "?")) and (stripped != text or piece[:1].isspace()) and bool(piece.strip())


def _llm_weight(prior: FieldPrior | None) -> float:
    """How much the LLM's own probabilities count in a decision: fully without a head."""
    return prior.llm_weight if prior is not None else 1.0


def _prior(
    priors: TicketPriors | None, field: LabelField, trie: LabelTrie, category: str | None = None
) -> FieldPrior | None:
    """The head's view of one decision over `trie`'s labels; None without a head or for a field it
    does not predict."""
    return priors.prior(field, tuple(trie.labels), category) if priors is not None else None


def _log_sum_exp(row: npt.NDArray[np.float64]) -> float:
    peak = row.max()
    return float(peak + np.log(np.exp(row - peak).sum()))


def log_softmax_at(logits: npt.NDArray[np.float32], tokens: list[int]) -> npt.NDArray[np.float64]:
    """log p(token) for each of `tokens` under softmax(logits)."""
    row = logits.astype(np.float64)
    return np.asarray(row[tokens] - _log_sum_exp(row), dtype=np.float64)


def log_mass(logits: npt.NDArray[np.float32], tokens: list[int]) -> float:
    """log of the total softmax(logits) probability of `tokens`."""
    row = logits.astype(np.float64)
    return _log_sum_exp(row[tokens]) - _log_sum_exp(row)


def log_softmax_among(logits: npt.NDArray[np.float32], tokens: list[int]) -> npt.NDArray[np.float64]:
    """log p(token) for each of `tokens`, renormalised over `tokens` alone (the ones the grammar allows)."""
    row = logits[tokens].astype(np.float64)
    return np.asarray(row - _log_sum_exp(row), dtype=np.float64)


class GuidedDecoder:
    """Decodes answers for one engine and taxonomy; keeps sequence 0's tokens to reuse its KV cache."""

    def __init__(
        self,
        engine: LlamaEngine,
        taxonomy: Taxonomy,
        max_summary_tokens: int,
        label_search: LabelSearch = "exact",
        one_sentence: bool = True,
    ) -> None:
        self.engine = engine
        self.taxonomy = taxonomy
        self.max_summary_tokens = max_summary_tokens
        self.label_search = label_search
        self.one_sentence = one_sentence
        self.layout = AnswerLayout.of(taxonomy)
        self._cached: list[int] = []  # tokens whose KV sits in sequence 0
        self._summary_open = engine.tokenize(self.layout.key_prefix(0))
        self._closing_text = self.layout.label_suffix("summary")
        self._summary_close = engine.tokenize(self._closing_text)
        self._pieces = [engine.token_bytes(t) for t in range(engine.n_vocab)]
        self._special = [
            not piece or engine.is_control(t) or engine.is_end_of_generation(t) for t, piece in enumerate(self._pieces)
        ]
        self._summary_tables()
        self._tries = self._label_tries()
        self._spare = engine.n_seq_max - 1  # sets an answer aside while a rival category is scored
        assert all(len(trie.labels) < self._spare for trie in self._tries.values()), "too few sequences"
        self._subcategory_openers = self._openers()
        self._opener_tokens = np.array(list(self._subcategory_openers))

    # --- precomputation -----------------------------------------------------------------------
    def _string_step(self, state: StringState, token: int) -> Step | None:
        """What `token` does to the summary's string after `state`; None where the grammar refuses it.
        A token that closes the string must go on as the scaffolding after it does."""
        if self._special[token]:
            return None
        taken = advance(state, self._pieces[token])
        if taken is None or (taken.closes and not self._closing_text.startswith('"' + taken.after)):
            return None
        return taken

    def _summary_tables(self) -> None:
        """Each token's step from a character boundary (the state nearly every summary token starts
        in) as masks; the rare states inside an escape or a split character are checked token by token."""
        self._piece_chars = np.full(self.engine.n_vocab, SUMMARY_MAX_CHARS + 1)
        self._content_mask, self._first_mask, self._close_mask = (
            np.zeros(self.engine.n_vocab, dtype=bool) for _ in range(3)
        )
        for token in range(self.engine.n_vocab):
            string_step = self._string_step(BOUNDARY, token)
            if string_step is None:
                continue
            self._piece_chars[token] = string_step.chars
            self._close_mask[token] = string_step.closes
            self._content_mask[token] = not string_step.closes
            self._first_mask[token] = string_step.visible and not string_step.closes
        self._continue_mask = self._content_mask | self._close_mask  # after the first token

    def _label_tries(self) -> dict[tuple[str, str | None], LabelTrie]:
        """Token sequences of `label + following scaffolding`, per field (and category for subcategory)."""
        table: dict[tuple[str, str | None], LabelTrie] = {}
        fields: list[tuple[LabelField, str | None]] = []
        for name in self.layout.labels:
            if name == "subcategory":
                fields += [("subcategory", c.name) for c in self.taxonomy.categories]
            else:
                fields.append((name, None))
        for name, category in fields:
            suffix = self.layout.label_suffix(name)
            labels = self.taxonomy.choices(name, category)
            table[(name, category)] = LabelTrie([(label, self.engine.tokenize(label + suffix)) for label in labels])
        return table

    def _openers(self) -> dict[int, list[int]]:
        """Each token that starts a subcategory: the categories (indices in the category trie) it starts one of."""
        openers: dict[int, list[int]] = {}
        if "subcategory" not in self.layout.labels:
            return openers
        for index, category in enumerate(self._tries[("category", None)].labels):
            for token in self._tries[("subcategory", category)].root.children:
                openers.setdefault(token, []).append(index)
        return openers

    def label_trie(self, name: str, category: str | None = None) -> LabelTrie:
        """The canonical token sequences of a field's labels (the subcategory's: of `category`)."""
        return self._tries[(name, category if name == "subcategory" else None)]

    def largest_batch(self) -> int:
        """Tokens in the biggest label-scoring batch: pending tokens plus a trie's branching nodes."""
        # a closing token's characters before its quote take at most a token per byte
        summary_tail = max(len(piece) for piece in self._pieces if b'"' in piece)
        longest_pending = max(
            summary_tail + len(self._summary_close), *(len(t) for trie in self._tries.values() for t in trie.tokens)
        )
        return longest_pending + max(len(trie.to_evaluate) for trie in self._tries.values())

    @property
    def content_mask(self) -> npt.NDArray[np.bool_]:
        """Tokens that may continue the summary's string from a character boundary without closing it."""
        return self._content_mask

    @property
    def max_answer_tokens(self) -> int:
        longest = sum(
            max(len(tokens) for tokens in self._tries[(name, None)].tokens)
            for name in self.layout.labels
            if name != "subcategory"
        )
        longest += max(
            (
                max(len(tokens) for tokens in trie.tokens)
                for (name, _), trie in self._tries.items()
                if name == "subcategory"
            ),
            default=0,
        )
        summary = self.max_summary_tokens + CHARACTER_TAIL_TOKENS
        return len(self._summary_open) + summary + len(self._summary_close) + longest

    def reset(self) -> None:
        """Forget the cached prompt (the next ticket evaluates its prompt in full)."""
        self.engine.remove(-1, 0)
        self._cached.clear()

    # --- sequence 0 -----------------------------------------------------------------------------
    def append(self, tokens: list[int], stats: DecodeStats) -> npt.NDArray[np.float32]:
        """Evaluate `tokens` after sequence 0; returns the logits after the last one."""
        logits = np.empty(0, dtype=np.float32)
        for start in range(0, len(tokens), self.engine.n_batch):
            chunk = tokens[start : start + self.engine.n_batch]
            base = len(self._cached)
            items = [BatchItem(t, base + i, (0,), i == len(chunk) - 1) for i, t in enumerate(chunk)]
            logits = self.engine.decode(items)[0]
            self._cached.extend(chunk)
            stats.forward_passes += 1
        return logits

    def feed_prompt(self, tokens: list[int], fixed: int, stats: DecodeStats) -> npt.NDArray[np.float32]:
        """Evaluate the prompt, reusing the KV cache of its fixed first `fixed` tokens.

        The fixed part and the rest are always evaluated as separate batches, and only the fixed part
        is reused, so a ticket's logits are bit-for-bit the same whatever was triaged before it."""
        if self._cached[:fixed] != tokens[:fixed]:
            self.reset()
            self.append(tokens[:fixed], stats)
            stats.prompt_tokens_evaluated += fixed
        self.engine.remove(-1, fixed)
        del self._cached[fixed:]
        stats.prompt_tokens_evaluated += len(tokens) - fixed
        return self.append(tokens[fixed:], stats)

    # --- fields -------------------------------------------------------------------------------
    def _next_token(
        self, state: StringState, logits: npt.NDArray[np.float32], first: bool, budget: int
    ) -> tuple[int, Step]:
        """The best token the grammar allows after `state` that starts at most `budget` characters."""
        if state.at_boundary:
            allowed = self._first_mask if first else self._continue_mask
            token = int(np.argmax(np.where(allowed & (self._piece_chars <= budget), logits, -np.inf)))
            string_step = self._string_step(state, token)
            assert string_step is not None, "at a character boundary the grammar always allows a token"
            return token, string_step
        for candidate in np.argsort(-logits):
            string_step = self._string_step(state, int(candidate))
            if string_step is not None and string_step.chars <= budget:
                return int(candidate), string_step
        raise DecodingError("no token of this model's vocabulary finishes the summary's escape or character")

    def _summary(self, logits: npt.NDArray[np.float32], stats: DecodeStats) -> tuple[str, float, list[int]]:
        """Greedy summary under the grammar's string rules (runtime/json_string) and its character
        bound. Stops where a token that closes the string wins (as under the grammar; the canonical
        closing tokens follow, whichever it was), at the token bound, or (with `one_sentence`) where the
        next token would open a second sentence after `.`, `!` or `?`; the last two only between
        characters, so past the token bound an escape or a split character is finished first. Also
        returns the summary's tokens not yet evaluated: at the token bound, the last one is left to the
        batch of the scaffolding that must follow it (its logits could not change anything)."""
        text = ""  # the string's content as the answer spells it, escapes included
        state, chars, written = BOUNDARY, 0, 0
        log_probs: list[float] = []
        unevaluated: list[int] = []
        while True:
            token, taken = self._next_token(state, logits, written == 0, SUMMARY_MAX_CHARS - chars)
            if taken.closes:  # its summary characters, if any, join the scaffolding's batch
                unevaluated = self.engine.tokenize(taken.written) if taken.written else []
                text += taken.written
                break
            # a token that only begins a character stands for a character that is not a space
            if state.at_boundary and self.one_sentence and opens_sentence(text, taken.written or "\ufffd"):
                break
            log_probs.append(float(log_softmax_at(logits, [token])[0]))
            text += taken.written
            state, chars, written = taken.state, chars + taken.chars, written + 1
            stats.sampled_tokens += 1
            if state.at_boundary and written >= self.max_summary_tokens:
                unevaluated = [token]
                break
            logits = self.append([token], stats)
        confidence = float(np.exp(np.mean(log_probs))) if log_probs else 0.0
        return text.strip(), confidence, unevaluated

    def _score(
        self, pending: list[int], trie: LabelTrie, stats: DecodeStats, prior: FieldPrior | None = None
    ) -> ScoredLabels:
        """Append the forced `pending` tokens and score every label of `trie` under the grammar, in one
        batch: the pending tokens belong to sequence 0 and to every label's sequence, each trie node to
        the sequences of the labels below it. The labels' sequences stay until `_keep`."""
        assert pending, "a label is always preceded by tokens that are not yet evaluated"
        base = len(self._cached)
        label_seqs = tuple(sorted({i + 1 for node in trie.to_evaluate for i in node.labels}))
        for seq in label_seqs:
            self.engine.copy(0, seq, 0, base)
        items = [BatchItem(t, base + i, (0, *label_seqs), i == len(pending) - 1) for i, t in enumerate(pending)]
        start = base + len(pending)
        items += [
            BatchItem(node.token, start + node.depth - 1, tuple(i + 1 for i in node.labels), True)
            for node in trie.to_evaluate
        ]
        rows = self.engine.decode(items)
        stats.forward_passes += 1
        self._cached.extend(pending)
        node_logits = {id(trie.root): rows[0]}
        node_logits.update({id(node): row for node, row in zip(trie.to_evaluate, rows[1:], strict=True)})
        branch_log_probs: dict[int, dict[int, float]] = {}  # per branching node: its children's log-probs
        for node in (trie.root, *trie.to_evaluate):
            if len(node.children) > 1:
                children = list(node.children)
                log_probs = log_softmax_among(node_logits[id(node)], children)
                branch_log_probs[id(node)] = dict(zip(children, log_probs.tolist(), strict=True))
        scores = np.zeros(len(trie.labels))
        for index in range(len(trie.labels)):
            parent = trie.root
            for node in trie.path(index):
                scores[index] += branch_log_probs.get(id(parent), {}).get(node.token, 0.0)
                parent = node
        decided = prior.fuse(scores) if prior is not None else scores
        if self.label_search == "greedy" and prior is None:
            best = self._greedy_path(trie, node_logits)
        else:
            best = int(np.argmax(decided))
        evaluated = sum(1 for node in trie.path(best) if id(node) in node_logits)
        return ScoredLabels(trie, decided, scores, prior, rows[0], start, label_seqs, best, evaluated)

    def _keep(self, scored: ScoredLabels) -> list[int]:
        """Keep the best label's evaluated tokens in sequence 0 and drop the labels' sequences; returns
        its tokens still to be evaluated (the next batch's pending tokens)."""
        tokens = scored.trie.tokens[scored.best]
        if scored.evaluated:
            self.engine.copy(scored.best + 1, 0, scored.start, scored.start + scored.evaluated)
            self._cached.extend(tokens[: scored.evaluated])
        for seq in scored.sequences:
            self.engine.remove(seq, 0)
        return tokens[scored.evaluated :]

    def _choose(
        self, pending: list[int], trie: LabelTrie, stats: DecodeStats, prior: FieldPrior | None
    ) -> tuple[ScoredLabels, list[int]]:
        """The best label of `trie` after `pending`, scored, and its tokens still to be evaluated."""
        scored = self._score(pending, trie, stats, prior)
        return scored, self._keep(scored)

    def _pair(
        self,
        categories: ScoredLabels,
        index: int,
        pending: list[int],
        stats: DecodeStats,
        priors: TicketPriors | None,
    ) -> CategoryPair:
        """Score category `index`'s subcategories after `pending` and keep the best in sequence 0."""
        category = categories.trie.labels[index]
        trie = self.label_trie("subcategory", category)
        scored = self._score(pending, trie, stats, _prior(priors, "subcategory", trie, category))
        # the probability of the category, of the model starting one of its own subcategories after
        # it (not renormalised: a model that wants another category's subcategory makes this small;
        # weighted as the LLM is in the fusion), and of the best of them under the grammar
        mass_weight = _llm_weight(categories.prior)
        log_score = float(
            categories.log_probs[index]
            + mass_weight * log_mass(scored.first_logits, list(trie.root.children))
            + scored.log_probs[scored.best]
        )
        return CategoryPair(index, scored, log_score, self._keep(scored))

    def _rival(self, categories: ScoredLabels, pair: CategoryPair) -> int | None:
        """The category of the subcategory the model would start after the chosen category if the
        grammar allowed every subcategory of the taxonomy; None when that is one of its own."""
        favourite = self._opener_tokens[int(np.argmax(pair.subcategory.first_logits[self._opener_tokens]))]
        owners = self._subcategory_openers[int(favourite)]
        if pair.category in owners:
            return None
        return max(owners, key=lambda index: float(categories.log_probs[index]))

    def _category_and_subcategory(
        self, pending: list[int], stats: DecodeStats, priors: TicketPriors | None
    ) -> tuple[ScoredLabels, CategoryPair]:
        """The category and subcategory, chosen together with `label_search: exact`. Under the
        grammar a wrong category still gets a subcategory of its own, however little the model wants
        one; so when the model, after the most probable category, would rather start a subcategory of
        another category, that rival is scored as well and the pair the model finds more probable
        (category x start of one of its subcategories x the subcategory) is kept."""
        trie = self.label_trie("category")
        prior = _prior(priors, "category", trie)
        categories = self._score(pending, trie, stats, prior)
        first = self._pair(categories, categories.best, self._keep(categories), stats, priors)
        # the rival comes from the LLM's own wish for another category's subcategory: without a
        # say in the fusion, that wish counts for nothing
        asks_rival = self.label_search == "exact" and _llm_weight(prior) > 0
        rival = self._rival(categories, first) if asks_rival else None
        if rival is None:
            return categories, first
        stats.rival_categories_scored += 1
        start, kept = categories.start, self._cached[categories.start :]
        self.engine.copy(0, self._spare, start)  # set the first answer aside
        self.engine.remove(0, start)
        del self._cached[start:]
        second = self._pair(categories, rival, categories.trie.tokens[rival], stats, priors)
        if second.log_score > first.log_score:
            self.engine.remove(self._spare, 0)
            stats.rival_categories_chosen += 1
            return categories, second
        self.engine.remove(0, start)
        self.engine.copy(self._spare, 0, start)
        self.engine.remove(self._spare, 0)
        self._cached[start:] = kept
        return categories, first

    @staticmethod
    def _greedy_path(trie: LabelTrie, node_logits: dict[int, npt.NDArray[np.float32]]) -> int:
        """The label a greedy token-by-token sampler under the grammar would pick."""
        node = trie.root
        while node.children:
            children = list(node.children.values())
            if len(children) == 1:
                node = children[0]
                continue
            logits = node_logits[id(node)]
            node = max(children, key=lambda child: logits[child.token])
        return node.labels[0]

    def decode(self, prompt_tokens: list[int], fixed_prefix: int, priors: TicketPriors | None = None) -> DecodedAnswer:
        """Decode the answer to a prompt whose first `fixed_prefix` tokens are the same for every ticket;
        with `priors`, every label decision is fused with the label head's."""
        stats = DecodeStats()
        start = len(prompt_tokens)
        logits = self.feed_prompt(prompt_tokens + self._summary_open, fixed_prefix, stats)
        values: dict[str, str] = {}
        confidence: dict[str, float] = {}
        values["summary"], confidence["summary"], pending = self._summary(logits, stats)
        pending += self._summary_close
        parts: dict[str, FieldParts] = {}
        rest = self.layout.labels
        if "subcategory" in rest:  # category and subcategory come first, in this order
            categories, pair = self._category_and_subcategory(pending, stats, priors)
            values["category"] = categories.trie.labels[pair.category]
            confidence["category"] = categories.probability(pair.category)
            values["subcategory"] = pair.subcategory.trie.labels[pair.subcategory.best]
            confidence["subcategory"] = pair.subcategory.confidence
            parts = {"category": categories.parts(), "subcategory": pair.subcategory.parts()}
            pending, rest = pair.tail, rest[2:]
        for name in rest:
            trie = self.label_trie(name)
            scored, pending = self._choose(pending, trie, stats, _prior(priors, name, trie))
            values[name], confidence[name], parts[name] = trie.labels[scored.best], scored.confidence, scored.parts()
        answer = self._cached[start:] + pending  # the answer's tail: nothing follows, so never evaluated
        stats.forced_tokens = len(answer) - stats.sampled_tokens  # scaffolding and labels, none sampled
        return DecodedAnswer(confidence, answer, stats, parts)

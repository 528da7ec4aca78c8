import itertools

from ticketsmith.runtime.schema import Ticket
from ticketsmith.runtime.taxonomy import Taxonomy
from ticketsmith.train.synth import generate


def test_same_seed_same_tickets(taxonomy: Taxonomy) -> None:
    assert list(generate(taxonomy, 50, seed=3)) == list(generate(taxonomy, 50, seed=3))
    assert list(generate(taxonomy, 50, seed=3)) != list(generate(taxonomy, 50, seed=4))


def test_labels_are_valid_and_cover_the_taxonomy(taxonomy: Taxonomy) -> None:
    tickets = list(generate(taxonomy, 400, seed=1))
    for ticket in tickets:
        Ticket.model_validate(ticket.model_dump(exclude={"id", "text", "language"}), context={"taxonomy": taxonomy})
        assert ticket.summary not in ticket.text
        assert ticket.text.strip()
    subcategories = {(c.name, s.name) for c in taxonomy.categories for s in c.subcategories}
    assert {(t.category, t.subcategory) for t in tickets} == subcategories
    severities = set(itertools.product(taxonomy.choices("urgency"), taxonomy.choices("impact")))
    assert {(t.urgency, t.impact) for t in tickets} == severities
    assert len({t.language for t in tickets}) > 1
    assert len({t.id for t in tickets}) == len(tickets)

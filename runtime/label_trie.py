"""The allowed labels of one field as a token trie, for scoring them under the grammar.

Under the grammar, a label's probability is the product, over its tokens, of the model's
probability renormalised over the tokens the grammar allows at that point. Where only one token is
allowed the factor is 1, so only the trie's branching nodes need logits: one batch item per node
on a path to a branching node, shared by every label below it."""

from dataclasses import dataclass, field


@dataclass
class TrieNode:
    token: int
    depth: int  # 1 for a label's first token
    labels: list[int] = field(default_factory=list)  # indices of the labels through this node
    children: dict[int, "TrieNode"] = field(default_factory=dict)


class LabelTrie:
    def __init__(self, candidates: list[tuple[str, list[int]]]) -> None:
        self.labels = [label for label, _ in candidates]
        self.tokens = [tokens for _, tokens in candidates]
        self.root = TrieNode(token=-1, depth=0)
        for index, tokens in enumerate(self.tokens):
            node = self.root
            node.labels.append(index)
            for depth, token in enumerate(tokens, start=1):
                node = node.children.setdefault(token, TrieNode(token=token, depth=depth))
                node.labels.append(index)
        self.to_evaluate = self._nodes_to_evaluate()

    def _nodes_to_evaluate(self) -> list[TrieNode]:
        """Nodes with 2+ children and their ancestors (below the root), parents before children."""
        out: list[TrieNode] = []

        def visit(node: TrieNode) -> bool:
            needed = len(node.children) > 1
            position = len(out)
            for child in node.children.values():
                needed = visit(child) or needed
            if needed and node is not self.root:
                out.insert(position, node)
            return needed

        visit(self.root)
        return out

    def path(self, index: int) -> list[TrieNode]:
        nodes, node = [], self.root
        for token in self.tokens[index]:
            node = node.children[token]
            nodes.append(node)
        return nodes

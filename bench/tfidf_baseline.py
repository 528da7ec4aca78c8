"""TF-IDF (1-2 grams) + linear SVM on the same training tickets as a fine-tuned model, scored on the same split.

The yardstick the real-data report compares the model with (the figure SOURCE.md quotes, recomputed
at our number of training examples):

    python -m bench.tfidf_baseline --train train.jsonl --limit 600 --test dev.jsonl --test-limit 400
"""

import argparse
import json
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from ticketsmith.train.evaluate import read_labelled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N training tickets")
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--field", default="category")
    parser.add_argument("--out", type=Path, default=Path("bench/results/tfidf_baseline.json"))
    args = parser.parse_args()
    train = [r for r in read_labelled(args.train, args.limit) if r.get(args.field)]
    test = [r for r in read_labelled(args.test, args.test_limit) if r.get(args.field)]
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LinearSVC())
    model.fit([r["text"] for r in train], [r[args.field] for r in train])
    predicted = model.predict([r["text"] for r in test])
    gold = [r[args.field] for r in test]
    result = {
        "field": args.field,
        "train_examples": len(train),
        "test_examples": len(test),
        "accuracy": round(float(accuracy_score(gold, predicted)), 4),
        "macro_f1": round(float(f1_score(gold, predicted, average="macro")), 4),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

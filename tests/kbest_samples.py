"""K-best lists for the tests: random texts, subword encodings, our file and fairseq-generate's output."""

from fairseq_seqkd.kbest import Sentence

# characters that exercise every rule of sacrebleu's 13a tokenizer
NASTY = list("aábcdeéz") + list("0123456789") + list(".,.,-:;!?'\"&/()[]{}~`@#$%^*+=<>|\\") + [
    " ", " ", " ", "\t", "\u00a0", "&quot;", "&amp;", "&lt;", "&gt;", "<skipped>", "é", "ß", "中", "😀", "--", "...", "\x00"]


def random_text(rng, max_len=30):
    return "".join(rng.choice(NASTY) for _ in range(rng.randint(0, max_len)))


def to_sentencepiece(text):
    return " ".join("\u2581" + w if i % 3 else "\u2581" + w[:2] + " " + w[2:] if len(w) > 2 else "\u2581" + w
                    for i, w in enumerate(text.split()))


def to_subword_nmt(text):
    return " ".join(w[:2] + "@@ " + w[2:] if len(w) > 3 else w for w in text.split())


def random_kbest(rng, n, k, encode):
    vocab = ["the", "Lord", "said", "unto", "Moses", ",", "and", "land", "of", "Égypte", "über", "日本", "light", "."]
    sentences = []
    for i in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 12))]
        hyps = []
        for _ in range(rng.randint(1, k)):
            h = ref[:] if rng.random() < 0.7 else []
            for _ in range(rng.randint(0, 4)):
                if h and rng.random() < 0.5:
                    h[rng.randrange(len(h))] = rng.choice(vocab)
                else:
                    h.insert(rng.randint(0, len(h)), rng.choice(vocab))
            hyps.append(encode(" ".join(h)))
        if rng.random() < 0.3 and len(hyps) > 1:
            hyps[1] = hyps[0]  # ties
        sentences.append(Sentence(i, source=f"src {i} \u00e1", reference=encode(" ".join(ref)),
                                  hyps=[(-0.1 * r, h) for r, h in enumerate(hyps)]))
    return sentences


def write_generate_output(path, sentences, rng):
    """fairseq-generate's format, sentences in a shuffled (batch) order, with log noise."""
    order = sentences[:]
    rng.shuffle(order)
    with open(path, "w") as f:
        f.write("2026-11-28 | INFO | fairseq_cli.generate | loading model\n")
        for s in order:
            f.write(f"S-{s.id}\t{s.source}\nT-{s.id}\t{s.reference}\n")
            for score, h in s.hyps:
                f.write(f"H-{s.id}\t{score}\t{h}\nD-{s.id}\t{score}\t{h}\nP-{s.id}\t-0.1 -0.2\n")
        f.write("Generate test with beam=5: BLEU4 = 1.00\n")

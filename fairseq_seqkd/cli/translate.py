"""seqkd-translate: translate stdin with a student exported by seqkd-export (fairseq not needed).

    seqkd-translate DIR [--beam K] [--batch-size N] [--max-len-a A --max-len-b B] [--lenpen L] [--threads T]
                    [--int8-activations sentence|batch] < src > out

DIR is either kind of directory seqkd-export writes: an LSTM's (decoded with torch) or a Transformer's
CTranslate2 model (decoded with ctranslate2 and sentencepiece only: torch and fairseq are not imported).
Reads source lines on stdin (raw text when DIR has a SentencePiece model, else space-separated subwords),
writes one translation per line on stdout in input order, and ends with one line on stderr like
fairseq-generate's: sentences, source words, seconds, sentences/s, source words/s (the seconds count
decoding, not loading). Every line is read and checked (UTF-8, length limit) before the first is decoded: a
bad line stops the run before any output.

With a float model (the default export) the output is fairseq-generate's best hypothesis for the same
checkpoint, --beam, --max-len-a/-b and --lenpen (fairseq's limit, applied to each sentence: at most
int(A * (source subwords + 1) + B) target subwords); with an int8 export it is close to it. For an LSTM
int8 export, each line's translation is the one it gets alone, whatever --batch-size (--int8-activations
sentence, the default). --int8-activations batch quantises each matrix product's input with one scale for
the whole batch and encodes the batch at once, as fbgemm's dynamic quantisation does: faster (about 10-25%
at --batch-size 1, 18% at 16, on one thread), but a line's translation may then change with the lines
decoded next to it, and with --batch-size. --int8-activations is for LSTM directories only: a CTranslate2
directory refuses it.
"""

import sys

from fairseq_seqkd.cli import argument_parser
from fairseq_seqkd.errors import SeqKDError, exit_on_error


def get_parser():
    from fairseq_seqkd.deploy.common import INT8_ACTIVATIONS

    p = argument_parser("seqkd-translate", __doc__)
    p.add_argument("model", metavar="DIR", help="a directory written by seqkd-export")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy decoding)")
    p.add_argument("--batch-size", type=int, default=1, help="sentences decoded together (default 1)")
    p.add_argument("--max-len-a", type=float, default=0.0, help="at most A * source length + B target words")
    p.add_argument("--max-len-b", type=int, default=200, help="(see --max-len-a; fairseq's defaults 0 and 200)")
    p.add_argument("--lenpen", type=float, default=1.0, help="length penalty as fairseq's (default 1)")
    p.add_argument("--threads", type=int, help="CPU threads (default: torch's for an LSTM directory, usually one "
                                               "per core; CTranslate2's for a CTranslate2 one)")
    p.add_argument("--int8-activations", choices=INT8_ACTIVATIONS,
                   help="int8 LSTM exports only (a CTranslate2 directory refuses it): quantise and encode each "
                        "sentence on its own, so that its translation does not depend on its batch mates "
                        "(sentence, the default), or whole batches (batch: faster, output depends on the batch)")
    return p


def read_stdin_lines(stream):
    """stdin's lines (without newlines); SeqKDError names a line that is not UTF-8."""
    raw = stream.read()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, line in enumerate(lines, 1):
        try:
            out.append(line.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as e:
            raise SeqKDError(f"stdin line {i}: not UTF-8 ({e.reason} at byte {e.start})") from None
    return out


def main(argv=None, stdin=None, stdout=None, stderr=None):
    from fairseq_seqkd.deploy import open_translator
    from fairseq_seqkd.deploy.common import Summary

    args = get_parser().parse_args(argv)
    stdin = stdin or sys.stdin.buffer
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if args.batch_size < 1:
        raise SeqKDError(f"--batch-size {args.batch_size}: must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise SeqKDError(f"--threads {args.threads}: must be at least 1")
    translator = open_translator(args.model, beam=args.beam, lenpen=args.lenpen, max_len_a=args.max_len_a,
                                 max_len_b=args.max_len_b, threads=args.threads,
                                 int8_activations=args.int8_activations)
    if getattr(translator, "warning", None):
        print(translator.warning, file=stderr)
    lines = read_stdin_lines(stdin)
    sources = [translator.source_ids(line, f"stdin line {i}") for i, line in enumerate(lines, 1)]
    for i, ids in enumerate(sources, 1):
        translator.check_lengths(ids, f"stdin line {i}")
    summary = Summary()
    for start in range(0, len(sources), args.batch_size):
        batch = slice(start, start + args.batch_size)
        hyps = summary.timed(lines[batch], lambda: translator.translate_ids(sources[batch]))
        stdout.write("".join(translator.text(h) + "\n" for h in hyps))
    stdout.flush()
    print(summary.line(), file=stderr)
    return summary


def cli_main(argv=None):
    with exit_on_error():  # stdout carries the translations: no logging set up
        main(argv)


if __name__ == "__main__":
    cli_main()

"""seqkd-eval: the numbers of the paper's Table 1 for one model, as JSON.

    seqkd-eval DATA --path CKPT --json OUT.json [--subset test] [--beam 5]
               [--remove-bpe sentencepiece] [--refs FILE] [--extra-refs FILE ...] [--name NAME]

Keys: ``bleu_greedy`` and ``bleu_beam`` (sacrebleu corpus BLEU of the
detokenized output, as sacrebleu on fairseq-generate's hypotheses; with
``--extra-refs`` also ``*_multiref``), ``ppl`` (perplexity of the gold
targets, as fairseq's validation ppl), ``p_yhat`` (mean over sentences of the
probability the model gives its own greedy output, EOS included), ``params``,
``params_nonzero``, ``src_words_per_sec_greedy`` / ``_beam`` (source words per
second at batch size 1, the paper's setting; ``_batched`` keys: the batched
BLEU runs), the sacrebleu signature, device and thread count.
"""

import argparse
import json
import logging
import math
import os
import platform
import time

import torch

from fairseq_seqkd.cli import argument_parser, setup_logging
from fairseq_seqkd.subwords import REMOVE_BPE, remove_subwords
from fairseq_seqkd.textio import atomic_write_lines, fail, read_lines

logger = logging.getLogger("seqkd-eval")


def get_parser():
    p = argument_parser("seqkd-eval", __doc__)
    p.add_argument("data", help="fairseq binary data folder")
    p.add_argument("--path", required=True, help="the model's checkpoint")
    p.add_argument("--json", required=True, help="where to write the results")
    p.add_argument("--name", help="the model's name in reports (default: the JSON file's name)")
    p.add_argument("--subset", default="test")
    p.add_argument("--source-lang")
    p.add_argument("--target-lang")
    p.add_argument("--beam", type=int, default=5, help="beam size of the beam-search BLEU (the paper: 5)")
    p.add_argument("--remove-bpe", choices=REMOVE_BPE, default="sentencepiece",
                   help="subwords to words (as fairseq's --post-process)")
    p.add_argument("--refs", help="reference text, one line per sentence (default: the subset's targets, "
                                  "detokenized with --remove-bpe)")
    p.add_argument("--extra-refs", nargs="*", default=[], help="more references for multi-reference BLEU")
    p.add_argument("--max-tokens", type=int, default=4000, help="batch size of the BLEU runs")
    p.add_argument("--speed-sentences", type=int, default=0,
                   help="time batch-size-1 decoding on the first N sentences only (0: all)")
    p.add_argument("--max-len-a", type=float, default=0)
    p.add_argument("--max-len-b", type=int, default=200)
    p.add_argument("--hyps-out", help="write the detokenized greedy and beam outputs to this prefix (.greedy/.beam)")
    p.add_argument("--cpu", action="store_true")
    return p


def _generate(task, model, dataset, batches, beam, args, use_cuda):
    """{id: (tokens, positional log-probs)} of the best hypothesis, and decoding seconds."""
    from fairseq_seqkd.tasks.seqkd_translation import collate

    generator = task.build_generator([model], argparse.Namespace(
        beam=beam, nbest=1, max_len_a=args.max_len_a, max_len_b=args.max_len_b))
    out, seconds = {}, 0.0
    for batch in batches:
        sample = collate(dataset, batch, use_cuda)
        if use_cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        hypos = task.inference_step(generator, [model], sample)
        if use_cuda:
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        for i, sid in enumerate(sample["id"].tolist()):
            best = hypos[i][0]
            out[sid] = (best["tokens"].cpu(), best["positional_scores"].float().cpu())
    return out, seconds


def _gold_nll(task, model, dataset, batches, use_cuda):
    """Summed natural-log NLL of the gold targets (EOS included) and the number of target tokens."""
    from fairseq_seqkd.tasks.seqkd_translation import collate

    nll, ntokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            sample = collate(dataset, batch, use_cuda)
            net_output = model(**sample["net_input"])
            lprobs = model.get_normalized_probs(net_output, log_probs=True)
            target = sample["target"]
            picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            nll -= float(picked.masked_fill(target.eq(task.target_dictionary.pad()), 0).double().sum())
            ntokens += int(sample["ntokens"])
    return nll, ntokens


def evaluate(args):
    import sacrebleu

    from fairseq_seqkd.tasks.seqkd_translation import setup_data_task
    from fairseq_seqkd.teacher import load_model

    for path in ([args.refs] if args.refs else []) + args.extra_refs:
        if not os.path.isfile(path):
            fail(f"{path}: no such file")
    task = setup_data_task(args.data, args.subset, args.source_lang, args.target_lang)
    model = load_model(args.path, task, what="model")
    use_cuda = torch.cuda.is_available() and not args.cpu
    if use_cuda:
        model.cuda()
    model.make_generation_fast_()
    dataset = task.dataset(args.subset)
    n = len(dataset)
    src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
    strip = {tgt_dict.eos()}

    def words(dictionary, tokens):
        """Detokenized text of a token sequence, as fairseq-generate --post-process writes it."""
        return remove_subwords(dictionary.string(tokens, extra_symbols_to_ignore=strip), args.remove_bpe)

    refs = [read_lines(args.refs)] if args.refs else [[words(tgt_dict, dataset.tgt[i]) for i in range(n)]]
    refs += [read_lines(p) for p in args.extra_refs]
    for path, lines in zip(([args.refs] if args.refs else ["(targets)"]) + args.extra_refs, refs):
        if len(lines) != n:
            fail(f"{path}: {len(lines)} lines, but subset '{args.subset}' has {n} sentences")
    sources = [words(src_dict, dataset.src[i]) for i in range(n)]
    src_words = [len(s.split()) for s in sources]
    batches = task.get_batch_iterator(dataset, max_tokens=args.max_tokens, ignore_invalid_inputs=False, seed=1,
                                      disable_iterator_cache=True).frozen_batches
    result = {"name": args.name or os.path.splitext(os.path.basename(args.json))[0],
              "checkpoint": os.path.abspath(args.path), "subset": args.subset, "sentences": n, "beam": args.beam}
    bleu, multi = sacrebleu.BLEU(), sacrebleu.BLEU()
    outputs = {}
    for key, beam in (("greedy", 1), ("beam", args.beam)):
        hyps, seconds = _generate(task, model, dataset, batches, beam, args, use_cuda)
        outputs[key] = hyps
        texts = [words(tgt_dict, hyps[i][0]) for i in range(n)]
        result[f"bleu_{key}"] = bleu.corpus_score(texts, refs[:1]).score
        if args.extra_refs:
            result[f"bleu_{key}_multiref"] = multi.corpus_score(texts, refs).score
        result[f"src_words_per_sec_{key}_batched"] = sum(src_words) / seconds
        if args.hyps_out:
            atomic_write_lines(f"{args.hyps_out}.{key}", texts)
        logger.info("%s (beam %d): BLEU %.2f, %.0f source words/s batched", key, beam, result[f"bleu_{key}"],
                    result[f"src_words_per_sec_{key}_batched"])
    result["bleu_signature"] = str(bleu.get_signature())
    if args.extra_refs:
        result["bleu_signature_multiref"] = str(multi.get_signature())
    # p(ŷ): the model's probability of its own greedy output, EOS included, averaged over sentences
    result["p_yhat"] = sum(math.exp(float(outputs["greedy"][i][1].double().sum())) for i in range(n)) / n
    nll, ntokens = _gold_nll(task, model, dataset, batches, use_cuda)
    result["ppl"] = math.exp(nll / ntokens)
    result["params"] = sum(p.numel() for p in model.parameters())
    result["params_nonzero"] = sum(int(p.count_nonzero()) for p in model.parameters())
    speed_n = min(n, args.speed_sentences) if args.speed_sentences else n
    singles = [[i] for i in range(speed_n)]
    for key, beam in (("greedy", 1), ("beam", args.beam)):
        _, seconds = _generate(task, model, dataset, singles, beam, args, use_cuda)
        result[f"src_words_per_sec_{key}"] = sum(src_words[:speed_n]) / seconds
    result["speed_sentences"] = speed_n
    result["device"] = torch.cuda.get_device_name() if use_cuda else f"cpu ({platform.processor() or platform.machine()})"
    result["threads"] = torch.get_num_threads()
    atomic_write_lines(args.json, [json.dumps(result, indent=2)])
    logger.info("%s: BLEU greedy %.2f, beam %.2f; ppl %.2f; p(y^) %.4f; %d parameters (%d non-zero); "
                "%.0f / %.0f source words/s at batch size 1", result["name"], result["bleu_greedy"],
                result["bleu_beam"], result["ppl"], result["p_yhat"], result["params"], result["params_nonzero"],
                result["src_words_per_sec_greedy"], result["src_words_per_sec_beam"])
    return result


def cli_main(argv=None):
    setup_logging()
    evaluate(get_parser().parse_args(argv))


if __name__ == "__main__":
    cli_main()

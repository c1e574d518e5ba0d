"""fairseq's ``lstm`` model (Luong et al. 2015 attention LSTM) for decoding, in plain torch.

The same arithmetic as ``fairseq.models.lstm`` in eval mode, op for op (the encoder is torch's
``nn.LSTM`` over a packed batch, each decoder layer ``torch.lstm_cell``, Luong's "general"
attention and input feeding), so that at equal batch shapes every number is bit for bit the one
fairseq computes. What is left out is the per-step bookkeeping around it: fairseq's incremental
state dictionaries, dropout modules, attention buffers, and the copies of the encoder output that
beam search makes at every step.

With ``int8`` weights (``seqkd-export --quantize int8``) the decoder's matrix products (the LSTM
gates, the attention projections and the output layer) run as fbgemm's dynamically quantized
linear layers, with per-row weight scales. Embeddings and the encoder stay in float32.

fbgemm quantises a product's input with one scale for the whole matrix, so a row's result would
depend on the other rows, and a sentence's translation on its batch mates. By default
(``int8_activations="sentence"``) each row is first mapped onto [0, 1] by its own minimum and range
(every hypothesis gets its own scale) and each source is encoded on its own (the float encoder's
matrix products round differently at other batch shapes), so a sentence's translation is the same,
bit for bit, in any batch. ``"batch"`` quantises whole matrices and encodes whole batches: fewer
operations per step (about 10-25% faster at batch size 1 and 18% at 16, 1 thread, bench_speedup.py),
and a translation may change with its batch mates. It also attends over one copy of each sentence's
encoder output with batched matrix products of all its rows (beam search's K rows of a sentence at
once) instead of fairseq's element-wise products over a copy per row (14% faster on a 2x500 teacher's
beam search at batch 64, seqkd-distill --engine seqkd).
"""

import warnings
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fairseq_seqkd.deploy.common import INT8_ACTIVATIONS  # (sentence | batch; defined where no torch is needed)

#: matrices that ``--quantize int8`` stores as int8 (with the LSTM cells' two matrices side by side)
QUANTIZED_LINEARS = ("attention.input_proj", "attention.output_proj", "additional_fc", "fc_out")


def quantize_rows(weight: torch.Tensor):
    """Symmetric int8 quantisation with one scale per output row: ``weight ~ int8 * scale[:, None]``."""
    scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale.to(torch.float32)


class Int8Linear:
    """``F.linear`` with an int8 weight (per-row scales) and its input quantised dynamically by fbgemm:
    each input row with its own scale (``per_row``), else the whole input with one."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: Optional[torch.Tensor], per_row: bool = True):
        self.per_row = per_row
        with warnings.catch_warnings():  # torch marks its quantized tensors as deprecated
            warnings.simplefilter("ignore")
            zero = torch.zeros(q.size(0), dtype=torch.long)
            weight = torch._make_per_channel_quantized_tensor(q, scale.double(), zero, 0)
            self.packed = torch.ops.quantized.linear_prepack(weight, None if self.per_row else bias)
        self.out_features = q.size(0)
        if self.per_row:
            self.bias = bias if bias is not None else torch.zeros(q.size(0))
            self.weight_sums = (q.double().sum(dim=1) * scale.double()).float()  # W @ ones, W as fbgemm has it

    def __call__(self, x):
        if not self.per_row:
            return torch.ops.quantized.linear_dynamic(x, self.packed, True)
        # x = low + span * unit row by row, unit in [0, 1] with 0 and 1 in every row that is not constant (a
        # constant row's unit is 0, exactly 0 in any quantisation): fbgemm's range is [0, 1] in any batch
        low, high = torch.aminmax(x, dim=1, keepdim=True)
        span = high.sub_(low).clamp_(min=1e-30)
        y = torch.ops.quantized.linear_dynamic(x.sub(low).div_(span), self.packed, True)
        # one IEEE operation per element and step (no fused multiply-add, whose vector and scalar paths round
        # differently, so that a row's result would depend on where threads split the batch)
        return y.mul_(span).add_(self.bias).add_(low * self.weight_sums)


class EncoderOut:
    """Encoder states for a batch: outputs (S x B x H), final states per layer, padding mask (S x B)."""

    __slots__ = ("outs", "hiddens", "cells", "mask")

    def __init__(self, outs, hiddens, cells, mask):
        self.outs, self.hiddens, self.cells, self.mask = outs, hiddens, cells, mask


class DecoderState:
    """The incremental state of R decoder rows: per-layer h and c, the input feed, and the encoder
    output (and padding mask, None when nothing is padded) that each row attends to."""

    __slots__ = ("hiddens", "cells", "feed", "enc", "mask", "group")

    def __init__(self, hiddens, cells, feed, enc, mask, group=None):
        self.hiddens, self.cells, self.feed, self.enc, self.mask = hiddens, cells, feed, enc, mask
        #: None: enc is source positions x rows x H, one copy per row (fairseq's layout); k: enc is sentences x
        #: source positions x H, one copy per sentence, whose k rows are consecutive (LSTMNet.grouped_attention)
        self.group = group

    def select(self, rows: torch.Tensor, sentences_changed: bool):
        """Keep rows ``rows`` (beam reordering); the encoder output only when sentences left the batch
        (the rows of one sentence attend to identical copies of it)."""
        self.hiddens = [h.index_select(0, rows) for h in self.hiddens]
        self.cells = [c.index_select(0, rows) for c in self.cells]
        self.feed = self.feed.index_select(0, rows)
        if not sentences_changed:
            return
        if self.group:  # rows stay in blocks of `group`, one block per sentence kept
            dim, index = 0, torch.div(rows[::self.group], self.group, rounding_mode="trunc")
        else:
            dim, index = 1, rows
        self.enc = self.enc.index_select(dim, index)
        if self.mask is not None:
            self.mask = self.mask.index_select(dim, index)
            if not self.mask.any():
                self.mask = None


class LSTMNet:
    """An exported student: ``encode`` a batch of sources, ``start`` decoder rows, then ``step``.

    ``config`` is the manifest's ``model`` entry, ``weights`` the state dict (fairseq's names), ``pad``
    the <pad> id of the source and of the target dictionary, ``int8_activations`` one of
    :data:`INT8_ACTIVATIONS` (see the module docstring; float weights ignore it).
    """

    def __init__(self, config: dict, weights: dict, pad: int, target_pad: int, int8_activations: str = "sentence"):
        if int8_activations not in INT8_ACTIVATIONS:
            raise ValueError(f"int8 activations {int8_activations!r}: choose one of {', '.join(INT8_ACTIVATIONS)}")
        self.config = config
        self.pad = pad
        self.target_pad = target_pad
        w = weights
        self.layers = config["decoder_layers"]
        self.bidirectional = config["encoder_bidirectional"]
        self.src_embed = w["encoder.embed_tokens.weight"]
        self.tgt_embed = w["decoder.embed_tokens.weight"]
        self.encoder = torch.nn.LSTM(
            input_size=config["encoder_embed_dim"], hidden_size=config["encoder_hidden_size"],
            num_layers=config["encoder_layers"], bidirectional=self.bidirectional,
        )
        prefix = "encoder.lstm."
        self.encoder.load_state_dict({k[len(prefix):]: v for k, v in w.items() if k.startswith(prefix)})
        self.encoder.eval().requires_grad_(False)
        self.hidden_proj = self._optional_linear(w, "decoder.encoder_hidden_proj")
        self.cell_proj = self._optional_linear(w, "decoder.encoder_cell_proj")
        self.int8 = any(k.endswith(".int8") for k in w)
        #: whether a sentence's results are independent of the other sentences of its batch, bit for bit
        self.per_sentence = self.int8 and int8_activations == "sentence"
        #: attention over one copy of each sentence's encoder output, as batched matrix products of all its rows
        #: at once (int8 with batch-wide activations only: not fairseq's float operations, and a product's
        #: rounding may depend on the batch's padded source length)
        self.grouped_attention = self.int8 and not self.per_sentence
        if self.int8:
            self.cells = [self._int8_cell(w, i) for i in range(self.layers)]
        else:
            self.cells = [tuple(w[f"decoder.layers.{i}.{n}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                          for i in range(self.layers)]
        self.attention = config["attention"]
        if self.attention:
            self.input_proj = self._linear(w, "decoder.attention.input_proj")
            self.output_proj = self._linear(w, "decoder.attention.output_proj")
        self.additional_fc = self._linear(w, "decoder.additional_fc") if config["additional_fc"] else None
        if config["share_input_output_embed"] and not self.int8:
            self.fc_out = (self.tgt_embed, None)
        else:
            self.fc_out = self._linear(w, "decoder.fc_out")
        self.vocab_size = self.tgt_embed.size(0)
        self.hidden_size = config["decoder_hidden_size"]
        self.device = torch.device("cpu")

    def to(self, device):
        """Move the float network to ``device`` (a GPU); int8 weights run on the CPU only."""
        device = torch.device(device)
        if self.int8 and device.type != "cpu":
            raise ValueError("int8 weights run on the CPU only")

        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(device)
            if isinstance(x, tuple):
                return tuple(move(t) for t in x)
            return x

        for name in ("src_embed", "tgt_embed", "hidden_proj", "cell_proj", "input_proj", "output_proj",
                     "additional_fc", "fc_out"):
            if hasattr(self, name):
                setattr(self, name, move(getattr(self, name)))
        self.cells = [move(c) for c in self.cells]
        self.encoder.to(device)
        self.device = device
        return self

    # -- weights ---------------------------------------------------------------------------------

    @staticmethod
    def _optional_linear(w, name):
        return (w[name + ".weight"], w.get(name + ".bias")) if name + ".weight" in w else None

    def _linear(self, w, name):
        """(weight, bias) for F.linear, or an Int8Linear when the bundle stores the weight as int8."""
        if name + ".int8" in w:
            return Int8Linear(w[name + ".int8"], w[name + ".scale"], w.get(name + ".bias"), self.per_sentence)
        return (w[name + ".weight"], w.get(name + ".bias"))

    def _int8_cell(self, w, i):
        """One int8 product for both gate matrices: ``[x; h] @ [W_ih; W_hh]^T + b_ih + b_hh``."""
        p = f"decoder.layers.{i}."
        return Int8Linear(w[p + "weight.int8"], w[p + "weight.scale"], w[p + "bias_ih"] + w[p + "bias_hh"],
                          self.per_sentence)

    @staticmethod
    def _apply(linear, x):
        if isinstance(linear, Int8Linear):
            return linear(x)
        weight, bias = linear
        return F.linear(x, weight, bias)

    # -- encoder ---------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOut:
        """``src``: B x S token ids (each ending in </s>), right-padded, longest first; ``lengths``: B."""
        if self.per_sentence:
            return self._encode_each(src, lengths)
        return self._encode(src, lengths)

    def _encode_each(self, src, lengths):
        """:meth:`_encode`'s result with every sentence encoded alone (as it would be in a batch of one)."""
        parts = [self._encode(src[b:b + 1, :n], lengths[b:b + 1]) for b, n in enumerate(lengths.tolist())]
        width = src.size(1)
        outs = torch.cat([F.pad(p.outs, (0, 0, 0, 0, 0, width - p.outs.size(0)), value=self.pad * 1.0)
                          for p in parts], dim=1)
        mask = src.eq(self.pad).t()
        hiddens = torch.cat([p.hiddens for p in parts], dim=1)
        cells = torch.cat([p.cells for p in parts], dim=1)
        return EncoderOut(outs, hiddens, cells, mask if mask.any() else None)

    def _encode(self, src, lengths):
        x = F.embedding(src, self.src_embed, self.pad).transpose(0, 1)
        packed = pack_padded_sequence(x, lengths, enforce_sorted=True)
        directions = 2 if self.bidirectional else 1
        zeros = x.new_zeros(self.encoder.num_layers * directions, src.size(0), self.encoder.hidden_size)
        outs, (hiddens, cells) = self.encoder(packed, (zeros, zeros))
        outs, _ = pad_packed_sequence(outs, padding_value=self.pad * 1.0)
        if self.bidirectional:
            hiddens, cells = self._combine_bidir(hiddens), self._combine_bidir(cells)
        mask = src.eq(self.pad).t()
        return EncoderOut(outs, hiddens, cells, mask if mask.any() else None)

    def _combine_bidir(self, states):
        layers = self.encoder.num_layers
        return states.view(layers, 2, states.size(1), -1).transpose(1, 2).contiguous().view(layers, states.size(1), -1)

    def start(self, enc: EncoderOut, rows: torch.Tensor) -> DecoderState:
        """Decoder state for rows ``rows`` of the batch (sentence i repeated ``beam`` times in beam search)."""
        sentences = enc.outs.size(1)
        group = rows.numel() // sentences if self.grouped_attention and sentences else 0
        if group and torch.equal(rows, torch.arange(sentences, device=rows.device).repeat_interleave(group)):
            state = self._start_rows(enc, rows)
            state.enc = enc.outs.transpose(0, 1).contiguous()
            state.mask = None if enc.mask is None or not enc.mask.any() else enc.mask.t().contiguous()
            state.group = group
            return state
        return self._start_rows(enc, rows)

    def _start_rows(self, enc: EncoderOut, rows: torch.Tensor) -> DecoderState:
        outs = enc.outs.index_select(1, rows)
        hiddens = enc.hiddens.index_select(1, rows)
        cells = enc.cells.index_select(1, rows)
        hiddens = [hiddens[i] for i in range(self.layers)]
        cells = [cells[i] for i in range(self.layers)]
        if self.hidden_proj is not None:
            hiddens = [self._project(h, self.hidden_proj) for h in hiddens]
            cells = [self._project(c, self.cell_proj) for c in cells]
        feed = outs.new_zeros(rows.numel(), self.hidden_size)
        mask = enc.mask.index_select(1, rows) if enc.mask is not None else None
        if mask is not None and not mask.any():
            mask = None
        return DecoderState(hiddens, cells, feed, outs, mask)

    def _project(self, x, linear):
        if self.per_sentence:  # row by row: a float product's rounding may depend on its number of rows
            return torch.cat([F.linear(row, *linear) for row in x.split(1)])
        return F.linear(x, *linear)

    # -- decoder ---------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, state: DecoderState):
        """Logits (R x V) for the next word of each row, whose last word is ``tokens``; advances ``state``."""
        x = F.embedding(tokens, self.tgt_embed)
        layer_input = torch.cat((x, state.feed), dim=1)
        hiddens, cells = state.hiddens, state.cells
        for i, cell in enumerate(self.cells):
            if self.int8:
                gates = cell(torch.cat((layer_input, hiddens[i]), dim=1))
                h, c = _lstm_pointwise(gates, cells[i])
            else:
                h, c = torch.lstm_cell(layer_input, (hiddens[i], cells[i]), *cell)
            hiddens[i], cells[i] = h, c
            layer_input = h
        if self.attention:
            out = self._attend(h, state)
        else:
            out = h
        state.feed = out
        if self.additional_fc is not None:
            out = self._apply(self.additional_fc, out)
        return self._apply(self.fc_out, out)

    def _attend(self, h, state):
        """Luong's global "general" attention and attentional state ``tanh(W_c [c_t; h_t])``."""
        query = self._apply(self.input_proj, h)
        if state.group:  # enc: sentences x source positions x H; each sentence's rows are consecutive
            queries = query.view(state.enc.size(0), state.group, -1)
            scores = torch.bmm(queries, state.enc.transpose(1, 2))
            if state.mask is not None:
                scores = scores.masked_fill(state.mask.unsqueeze(1), float("-inf"))
            context = torch.bmm(F.softmax(scores, dim=2), state.enc).view(query.shape)
            return torch.tanh(self._apply(self.output_proj, torch.cat((context, h), dim=1)))
        scores = (state.enc * query.unsqueeze(0)).sum(dim=2)
        if state.mask is not None:
            scores = scores.masked_fill(state.mask, float("-inf"))
        scores = F.softmax(scores, dim=0)
        context = (scores.unsqueeze(2) * state.enc).sum(dim=0)
        return torch.tanh(self._apply(self.output_proj, torch.cat((context, h), dim=1)))


def _lstm_pointwise(gates, c):
    """The LSTM cell after its matrix products (torch's gate order: input, forget, cell, output)."""
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def int8_weights(weights: dict, config: dict) -> dict:
    """The state dict with the decoder's matrices as int8 + per-row scales (``--quantize int8``)."""
    out = dict(weights)
    for i in range(config["decoder_layers"]):
        p = f"decoder.layers.{i}."
        both = torch.cat((out.pop(p + "weight_ih"), out.pop(p + "weight_hh")), dim=1)
        out[p + "weight.int8"], out[p + "weight.scale"] = quantize_rows(both)
    for name in QUANTIZED_LINEARS:
        key = f"decoder.{name}.weight"
        if key in out:
            out[f"decoder.{name}.int8"], out[f"decoder.{name}.scale"] = quantize_rows(out.pop(key))
    if config["share_input_output_embed"]:
        out["decoder.fc_out.int8"], out["decoder.fc_out.scale"] = quantize_rows(out["decoder.embed_tokens.weight"])
    return out


def parameter_names(config: dict) -> List[str]:
    """The fairseq state-dict keys an exported float model holds (what the exporter copies)."""
    names = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
    directions = ["", "_reverse"] if config["encoder_bidirectional"] else [""]
    for i in range(config["encoder_layers"]):
        for d in directions:
            names += [f"encoder.lstm.{n}_l{i}{d}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if config["encoder_hidden_proj"]:
        names += [f"decoder.encoder_{s}_proj.{n}" for s in ("hidden", "cell") for n in ("weight", "bias")]
    for i in range(config["decoder_layers"]):
        names += [f"decoder.layers.{i}.{n}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if config["attention"]:
        names += ["decoder.attention.input_proj.weight", "decoder.attention.output_proj.weight"]
    if config["additional_fc"]:
        names += ["decoder.additional_fc.weight", "decoder.additional_fc.bias"]
    if not config["share_input_output_embed"]:
        names += ["decoder.fc_out.weight", "decoder.fc_out.bias"]
    return names

"""Luong et al. (2015) attention LSTMs, the model family of Kim & Rush (2016).

fairseq's ``lstm`` model already is this model: stacked unidirectional LSTMs,
the decoder started from the encoder's final states, global "general"
attention (score ``h_t^T W_a h_s``), attentional state
``tanh(W_c [c_t; h_t])``, input feeding, and uniform initialisation in
[-0.1, 0.1]. So we only register the paper's shapes as architectures of that
model and write no new module.

Dropout follows seq2seq-attn (the paper's code): 0.3 between stacked LSTM
layers and on the attentional state, none on the word embeddings. Every value
can be overridden on the command line (``--dropout``, ``--encoder-dropout-in``, ...).

Parameter counts with 50k source and 50k target words match the paper:
4x1000 221M, 2x500 84M, 2x300 49M; with 25k words 2x500 is 47M and 2x100 8M.
"""

from fairseq.models import register_model_architecture
from fairseq.models.lstm import base_architecture

#: The paper's shapes (layers, units), then small ones for 2-core CPU demos and tests.
LUONG_SHAPES = {
    "luong_lstm_4x1000": (4, 1000),
    "luong_lstm_2x500": (2, 500),
    "luong_lstm_2x300": (2, 300),
    "luong_lstm_2x100": (2, 100),
    "luong_lstm_2x256": (2, 256),
    "luong_lstm_2x128": (2, 128),
    "luong_lstm_2x64": (2, 64),
    "luong_lstm_1x384": (1, 384),
    "luong_lstm_1x256": (1, 256),
    "luong_lstm_1x192": (1, 192),
    "luong_lstm_1x128": (1, 128),
    "luong_lstm_1x32": (1, 32),
}


def luong_architecture(args, layers: int, units: int):
    """Fill in the defaults of a Luong LSTM with ``layers`` x ``units``.

    Embeddings, hidden states and the attentional state all have ``units``
    dimensions, as in the paper; anything given on the command line wins.
    """

    def default(name, value):
        if getattr(args, name, None) is None:
            setattr(args, name, value)

    default("dropout", 0.3)
    for side in ("encoder", "decoder"):
        default(f"{side}_layers", layers)
        default(f"{side}_embed_dim", units)
        default(f"{side}_hidden_size", units)
        default(f"{side}_dropout_in", 0.0)
        default(f"{side}_dropout_out", args.dropout)
    default("decoder_out_embed_dim", units)
    default("decoder_attention", "1")
    default("encoder_bidirectional", False)
    base_architecture(args)


def _register(name: str, layers: int, units: int):
    def architecture(args):
        luong_architecture(args, layers, units)

    architecture.__name__ = name
    architecture.__doc__ = f"Luong attention LSTM, {layers} layers of {units} units."
    register_model_architecture("lstm", name)(architecture)


for _name, (_layers, _units) in LUONG_SHAPES.items():
    _register(_name, _layers, _units)

"""Transformer shapes for distillation: deep-encoder/shallow-decoder students, and the Bible's teacher.

A Seq-KD student decodes with its decoder once per output token and with its encoder once per sentence,
so its speed is the decoder's: Kasai et al. (2021, "Deep Encoder, Shallow Decoder: Reevaluating
Non-autoregressive Machine Translation", ICLR) show that a Transformer with a deep encoder and a
one- or two-layer decoder keeps most of the quality of a balanced one at a fraction of its decoding
time, and the Bergamot project's CPU students (github.com/browsermt/students, ``student.tiny11``: 6 encoder
layers, 2 decoder layers, 256 wide, feed-forward 1536, 8 heads, tied embeddings; trained on a teacher's
Seq-KD output, after Kim et al. 2019, "From Research to Production and Back: Ludicrously Fast Neural
Machine Translation", WNGT) are built the same way.

These are architectures of fairseq's ``transformer`` model (no new module, same incremental decoding,
exported by CTranslate2 like any fairseq Transformer), registered with defaults that anything on the
command line overrides. Bergamot's decoder replaces self-attention with an SSRU, which fairseq does not
have; ours keep fairseq's self-attention. Embeddings are not tied by default (fairseq's own
architectures do not tie either): add ``--share-all-embeddings`` with a joint vocabulary
(``seqkd-prepare --joint-vocab``), as Bergamot does, or ``--share-decoder-input-output-embed``.

``transformer_teacher_bible`` is not a student: it is the Transformer teacher the Bible corpus has been
trained with (BENCHMARKS.md: 3+3 layers of 256, feed-forward 512, 4 heads), registered beside its
student so that the ``transformer`` preset of examples/bible/run.sh names both by one word.

Parameter counts (post-norm layers with biases, sinusoidal positions; d = width, f = feed-forward):
an encoder layer has 4d² + 2df + 9d + f, a decoder layer 8d² + 2df + 15d + f, plus the embeddings
(docs/architectures.md lists them for the vocabularies the recipes use).
"""

from fairseq.models import register_model_architecture
from fairseq.models.transformer import base_architecture

#: name: (encoder layers, decoder layers, width, feed-forward width, attention heads)
TRANSFORMER_SHAPES = {
    "transformer_student_tiny": (6, 2, 256, 1536, 8),  # Bergamot's student.tiny11, self-attention decoder
    "transformer_student_bible": (3, 1, 128, 512, 4),  # the Bible's CPU student (~1.1M with 2k joint words)
    "transformer_teacher_bible": (3, 3, 256, 512, 4),  # the Bible's Transformer teacher (BENCHMARKS.md)
}


def transformer_shape(args, encoder_layers: int, decoder_layers: int, dim: int, ffn: int, heads: int):
    """Fill in the defaults of a Transformer of this shape (the same width on both sides); anything given
    on the command line wins."""

    def default(name, value):
        if getattr(args, name, None) is None:
            setattr(args, name, value)

    for side, layers in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        default(f"{side}_layers", layers)
        default(f"{side}_embed_dim", dim)
        default(f"{side}_ffn_embed_dim", ffn)
        default(f"{side}_attention_heads", heads)
    base_architecture(args)


def _register(name: str, encoder_layers: int, decoder_layers: int, dim: int, ffn: int, heads: int):
    def architecture(args):
        transformer_shape(args, encoder_layers, decoder_layers, dim, ffn, heads)

    architecture.__name__ = name
    architecture.__doc__ = (f"Transformer, {encoder_layers} encoder and {decoder_layers} decoder layers of {dim}, "
                            f"feed-forward {ffn}, {heads} heads.")
    register_model_architecture("transformer", name)(architecture)


for _name, _shape in TRANSFORMER_SHAPES.items():
    _register(_name, *_shape)

"""Transformer architectures as the roofline sees them (pure): shapes from a Hugging Face config,
parameter and KV-cache sizes, PyTorch ops per forward pass and attention kinds (docs/device.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 4}


@dataclass(frozen=True)
class OpCounts:
    """PyTorch ops dispatched per forward pass: per decoder layer, per step outside the layers
    (embedding, final norm, LM head, generate's logits processing), per encoder layer."""

    per_layer: int
    per_step: int
    per_encoder_layer: int = 0


# Counted with a TorchDispatchMode around `generate` of 2- and 4-layer models of each type
# (transformers 5.24, CPU): per layer = difference / 2, per step = the rest. Views are ops too:
# each costs host dispatch time. `python benchmarks/sim_calibration.py --count-ops` re-counts.
OP_COUNTS: dict[str, OpCounts] = {
    "gpt2": OpCounts(39, 50),
    "gpt_neo": OpCounts(44, 70),
    "gptj": OpCounts(61, 48),
    "mistral": OpCounts(57, 62),
    "llama": OpCounts(55, 62),
    "falcon": OpCounts(47, 75),
    "t5": OpCounts(59, 70, 39),
}
DEFAULT_OP_COUNTS = OpCounts(52, 62, 40)  # other model types: the mean of the counted ones

# How each implementation's attention touches the KV cache, beyond the default
# (scaled_dot_product_attention on the cache as stored):
# - "upcast": GPT-Neo's eager attention casts the cached keys to fp32 and writes fp32 scores;
# - "broadcast": Falcon's multi-query attention hands SDPA one KV head for all query heads,
#   which only the math backend accepts: it upcasts to fp32 and materialises the expanded
#   keys and values (heads / kv_heads copies) and the scores.
ATTENTION_KIND: dict[str, str] = {"gpt_neo": "upcast", "falcon": "broadcast"}


@dataclass(frozen=True)
class ArchSpec:
    """The shape of a transformer, read from a Hugging Face config (`model.arch`)."""

    model_type: str
    n_layers: int  # decoder layers
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool = False
    tied_embeddings: bool = True
    n_encoder_layers: int = 0  # > 0: encoder-decoder (T5)

    @property
    def attn_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def seq2seq(self) -> bool:
        return self.n_encoder_layers > 0

    @property
    def self_attn_params(self) -> int:
        return 2 * self.hidden * self.attn_dim + 2 * self.hidden * self.kv_dim  # q, o + k, v

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    @property
    def decoder_step_params(self) -> int:
        """Weights one decoding step reads per decoder layer (cross-attention k, v are cached)."""
        cross_qo = 2 * self.hidden * self.attn_dim if self.seq2seq else 0
        return self.self_attn_params + cross_qo + self.mlp_params

    @property
    def cross_kv_params(self) -> int:
        return 2 * self.hidden * self.kv_dim if self.seq2seq else 0

    @property
    def params(self) -> int:
        """All parameters (biases and norms left out: < 1 %)."""
        layers = self.n_layers * (self.decoder_step_params + self.cross_kv_params)
        encoder = self.n_encoder_layers * (self.self_attn_params + self.mlp_params)
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return layers + encoder + embeddings

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Self-attention KV cache per token: keys and values of every decoder layer."""
        return 2 * self.n_layers * self.kv_dim * dtype_bytes

    @property
    def op_counts(self) -> OpCounts:
        return OP_COUNTS.get(self.model_type, DEFAULT_OP_COUNTS)

    @property
    def attention_kind(self) -> str:
        kind = ATTENTION_KIND.get(self.model_type, "sdpa")
        return "sdpa" if kind == "broadcast" and self.n_kv_heads == self.n_heads else kind

    def attention_read_factor(self) -> float:
        """Bytes attention moves per byte of cached keys and values (see ATTENTION_KIND)."""
        kind = self.attention_kind
        if kind == "upcast":  # keys: read, written as fp32, read again; values: read
            return 3.0
        if kind == "broadcast":  # upcast (read, write x2), expand (read x2, write x2g), read
            return 5.0 + 4.0 * self.n_heads / self.n_kv_heads
        return 1.0


def _first(arch: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if arch.get(key) is not None:
            return arch[key]
    if default is None:
        raise ValueError(f"model.arch has none of {', '.join(keys)}")
    return default


def arch_spec(arch: Mapping[str, Any]) -> ArchSpec:
    """ArchSpec from a `model.arch` block (the keys of the model type's HF config class)."""
    model_type = str(arch.get("model_type", ""))
    if not model_type:
        raise ValueError("model.arch needs a model_type")
    hidden = int(_first(arch, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(arch, "num_attention_heads", "n_head", "num_heads"))
    layers = int(_first(arch, "num_hidden_layers", "n_layer", "num_layers"))
    vocab = int(_first(arch, "vocab_size"))
    if model_type == "t5":
        head_dim = int(_first(arch, "d_kv", default=hidden // heads))
        return ArchSpec(
            model_type,
            n_layers=int(_first(arch, "num_decoder_layers", default=layers)),
            hidden=hidden,
            n_heads=heads,
            n_kv_heads=heads,
            head_dim=head_dim,
            ffn=int(_first(arch, "d_ff", default=4 * hidden)),
            vocab=vocab,
            gated_mlp=str(arch.get("feed_forward_proj", "relu")).startswith("gated"),
            tied_embeddings=bool(arch.get("tie_word_embeddings", True)),
            n_encoder_layers=layers,
        )
    if model_type == "falcon":
        # Falcon-7B: multi-query (one KV head); the new decoder architecture has num_kv_heads.
        if arch.get("new_decoder_architecture"):
            kv = int(_first(arch, "num_kv_heads", default=heads))
        else:
            kv = 1 if arch.get("multi_query", True) else heads
    else:
        kv = int(_first(arch, "num_key_value_heads", "num_kv_heads", default=heads))
    ffn = int(_first(arch, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden))
    gated = model_type in {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "phi3"}
    # GPT-J and the llama family have their own LM head unless tied; GPT-2/Neo/Falcon tie it.
    tied_default = model_type in {"gpt2", "gpt_neo", "falcon"}
    return ArchSpec(
        model_type,
        n_layers=layers,
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=kv,
        head_dim=int(_first(arch, "head_dim", default=hidden // heads)),
        ffn=ffn,
        vocab=vocab,
        gated_mlp=gated,
        tied_embeddings=bool(arch.get("tie_word_embeddings", tied_default)),
    )

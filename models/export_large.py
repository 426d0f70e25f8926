#!/usr/bin/env python3
"""Exports real-size models (random weights, fixed seeds) into models/large/ for benchmarks and
end-to-end parity runs. models/large/ is gitignored: run this script to make them.

Same layout as models/fixtures (see export_fixtures.py): models/large/<name>/model.onnx, meta.json,
test_data_set_<j>/input_<k>.npy and output_<k>.npy, where the outputs are onnxruntime's
(CPUExecutionProvider, default optimisation level, one thread), plus models/large/MANIFEST.json.

Exporter: TorchScript (torch.onnx.export(..., dynamo=False, opset_version=17)) by default, giving
<name>; with --dynamo, the torch.export-based exporter, giving <name>_dynamo; --both does both.
Runs merge into the existing MANIFEST.json, so models can be exported one at a time.

Usage
  /work/torchenv/bin/python models/export_large.py                         # every model, TorchScript
  /work/torchenv/bin/python models/export_large.py resnet18 bert            # some models
  /work/torchenv/bin/python models/export_large.py --dynamo mobilenet_v3_small
  /work/torchenv/bin/python models/export_large.py --list
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from exportlib import Family, image_batch, run_all, token_batch  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from export_fixtures import BertEncoder, GPT2Logits, RNNTagger, ViTLogits, unit_scale_linears  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "large")

BS = {0: "batch", 1: "seq"}
TEXT = ("input_ids", "attention_mask", "token_type_ids")


def tv(builder: str, unit_scale_heads: bool = False, **kw):
    def build():
        import torchvision

        model = getattr(torchvision.models, builder)(weights=None, **kw)
        return unit_scale_linears(model) if unit_scale_heads else model

    return build


def vision(name: str, builder: str, description: str, unit_scale_heads: bool = False) -> Family:
    return Family(
        name=name,
        build=tv(builder, unit_scale_heads),
        input_names=["input"],
        output_names=["logits"],
        dynamic_inputs={"input": {0: "batch"}},
        dynamic_outputs={"logits": {0: "batch"}},
        example=image_batch(2, 224),
        datasets=[image_batch(1, 224)],
        description=description,
    )


class MLP(nn.Module):
    def __init__(self, sizes=(1024, 4096, 4096, 1000)):
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.GELU())
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def features(batch: int, width: int):
    def make(rng):
        return {"input": rng.standard_normal((batch, width)).astype("float32")}

    return make


def bert_large_config():
    from transformers import BertConfig

    return BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
    )


def gpt2_small_config():
    from transformers import GPT2Config

    return GPT2Config(vocab_size=50257, n_positions=512, n_embd=256, n_layer=4, n_head=4, use_cache=False)


def vit_tiny_config():
    from transformers import ViTConfig

    return ViTConfig(
        image_size=224,
        patch_size=16,
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        num_labels=1000,
    )


def families() -> list[Family]:
    return [
        vision("resnet18", "resnet18", "torchvision resnet18, 1000 classes, 224x224"),
        # MobileNet/EfficientNet heads start at std 0.01 in torchvision, leaving logits near 1e-3;
        # their Linear layers are redrawn at std 1/sqrt(fan_in) so the outputs are O(0.1..1).
        vision("mobilenet_v3_small", "mobilenet_v3_small", "torchvision mobilenet_v3_small, 224x224", True),
        vision("mobilenet_v3_large", "mobilenet_v3_large", "torchvision mobilenet_v3_large, 224x224", True),
        vision("squeezenet1_1", "squeezenet1_1", "torchvision squeezenet1_1, 224x224"),
        vision("efficientnet_b0", "efficientnet_b0", "torchvision efficientnet_b0, 224x224", True),
        Family(
            name="bert",
            build=lambda: BertEncoder(bert_large_config()),
            input_names=list(TEXT),
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_inputs={n: BS for n in TEXT},
            dynamic_outputs={"last_hidden_state": BS, "pooler_output": {0: "batch"}},
            example=token_batch(2, 16, 30522, TEXT),
            datasets=[
                token_batch(1, 128, 30522, TEXT, pad_rows=False),
                token_batch(8, 128, 30522, TEXT),
                token_batch(3, 17, 30522, TEXT),
            ],
            description="BertModel hidden 768, 6 layers, 12 heads, vocab 30522",
        ),
        Family(
            name="gpt2",
            build=lambda: GPT2Logits(gpt2_small_config()),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_inputs={n: BS for n in ("input_ids", "attention_mask")},
            dynamic_outputs={"logits": BS},
            example=token_batch(2, 16, 50257, ("input_ids", "attention_mask")),
            datasets=[
                token_batch(1, 64, 50257, ("input_ids", "attention_mask"), pad_rows=False),
                token_batch(2, 37, 50257, ("input_ids", "attention_mask")),
            ],
            description="GPT2LMHeadModel n_embd 256, 4 layers, 4 heads, vocab 50257, use_cache=False",
        ),
        Family(
            name="vit",
            build=lambda: ViTLogits(vit_tiny_config()),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_inputs={"pixel_values": {0: "batch"}},
            dynamic_outputs={"logits": {0: "batch"}},
            example=image_batch(2, 224, name="pixel_values"),
            datasets=[image_batch(1, 224, name="pixel_values")],
            description="ViTForImageClassification ViT-Tiny/16 (hidden 192, 12 layers, 3 heads), 224x224",
        ),
        Family(
            name="lstm_tagger",
            build=lambda: RNNTagger("lstm", vocab=20000, emb=128, hidden=256, tags=20),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_inputs={"input_ids": BS},
            dynamic_outputs={"logits": BS},
            example=token_batch(2, 16, 20000, ("input_ids",), first_id=0),
            datasets=[
                token_batch(1, 50, 20000, ("input_ids",), first_id=0),
                token_batch(8, 64, 20000, ("input_ids",), first_id=0),
            ],
            description="Embedding(20000,128) + 2-layer bidirectional LSTM(256) + Linear(512,20)",
        ),
        Family(
            name="mlp",
            build=MLP,
            input_names=["input"],
            output_names=["logits"],
            dynamic_inputs={"input": {0: "batch"}},
            dynamic_outputs={"logits": {0: "batch"}},
            example=features(2, 1024),
            datasets=[features(1, 1024), features(64, 1024)],
            description="MLP 1024 -> 4096 -> 4096 -> 1000 with GELU",
        ),
    ]


def main() -> None:
    fams = families()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", help="models to export (default: all)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--dynamo", action="store_true", help="use the dynamo (torch.export) exporter")
    g.add_argument("--both", action="store_true", help="export with both exporters")
    ap.add_argument("--out", default=ROOT)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the sanity check")
    args = ap.parse_args()
    if args.list:
        for f in fams:
            print(f"{f.name:20s} {f.description}")
        return
    exporters = ["torchscript", "dynamo"] if args.both else (["dynamo"] if args.dynamo else ["torchscript"])
    torch.set_num_threads(args.threads)
    run_all(
        fams,
        exporters,
        args.out,
        set(args.models) if args.models else None,
        merge=True,
        suffixes={"torchscript": "", "dynamo": "_dynamo"},
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Exports the small model-parity fixtures in models/fixtures/.

What it does
  Every family below is a real architecture built from the library's own classes (torchvision,
  transformers, torch.nn) with a small configuration, random weights from a fixed seed (plus
  non-trivial BatchNorm statistics / norm affine parameters), in eval mode. Each family is exported
  twice, the way users export models:
    <family>_ts      torch.onnx.export(..., dynamo=False, opset_version=17, dynamic_axes=...)
    <family>_dynamo  torch.onnx.export(..., dynamo=True, dynamic_shapes=..., external_data=False)
                     (the exporter's default opset; per-node stack-trace metadata, which holds
                     absolute paths of this machine, is removed; everything else is as exported)
  Each fixture directory holds model.onnx (< 2 MB), meta.json (input/output names, dtypes and
  shapes, exporter, opset, data set file lists) and test_data_set_<j>/input_<k>.npy,
  output_<k>.npy, where k is the position among the graph's inputs/outputs. Models with dynamic
  axes get two data sets of different batch/sequence sizes.

  The reference outputs come from onnxruntime (CPUExecutionProvider, default graph optimisation
  level, one thread) running the exported model.onnx; torch's own outputs are only a sanity check
  (recorded in meta.json as torch_vs_ort_max_abs_diff). A family whose export fails with one
  exporter is left out and listed under "export_failures" in MANIFEST.json.

  The run is deterministic: fixed seeds for weights and inputs, no downloads (HF_HUB_OFFLINE=1).

Usage
  /work/torchenv/bin/python models/export_fixtures.py                 # everything
  /work/torchenv/bin/python models/export_fixtures.py --only bert gpt2  # some families
  /work/torchenv/bin/python models/export_fixtures.py --exporter dynamo
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from exportlib import Family, image_batch, run_all, token_batch  # noqa: E402

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

IMG = 64


# ---------------------------------------------------------------------------------------------
# torchvision


class NarrowResNet:
    """torchvision.models.resnet.ResNet with BasicBlock, its stage widths set to
    width, 2*width, 4*width, 8*width (torchvision's class hard-codes 64..512)."""

    @staticmethod
    def build(layers=(2, 2, 2, 2), width=8, num_classes=10):
        from torchvision.models.resnet import BasicBlock, ResNet

        class _ResNet(ResNet):
            def __init__(self):
                super().__init__(BasicBlock, list(layers), num_classes=num_classes)
                norm = self._norm_layer
                self.inplanes = width
                self.dilation = 1
                self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
                self.bn1 = norm(width)
                self.layer1 = self._make_layer(BasicBlock, width, layers[0])
                self.layer2 = self._make_layer(BasicBlock, width * 2, layers[1], stride=2)
                self.layer3 = self._make_layer(BasicBlock, width * 4, layers[2], stride=2)
                self.layer4 = self._make_layer(BasicBlock, width * 8, layers[3], stride=2)
                self.fc = nn.Linear(width * 8 * BasicBlock.expansion, num_classes)
                for m in self.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        return _ResNet()


def narrow_squeezenet(num_classes=10):
    """torchvision.models.SqueezeNet version 1_1 with every Fire module at half width (the full
    width with 10 classes is 2.9 MB)."""
    import torchvision
    from torchvision.models.squeezenet import Fire

    m = torchvision.models.SqueezeNet(version="1_1", num_classes=num_classes)
    m.features = nn.Sequential(
        nn.Conv2d(3, 32, kernel_size=3, stride=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(32, 8, 32, 32),
        Fire(64, 8, 32, 32),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(64, 16, 64, 64),
        Fire(128, 16, 64, 64),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        Fire(128, 24, 96, 96),
        Fire(192, 24, 96, 96),
        Fire(192, 32, 128, 128),
        Fire(256, 32, 128, 128),
    )
    final_conv = nn.Conv2d(256, num_classes, kernel_size=1)
    m.classifier[1] = final_conv
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            if mod is final_conv:
                nn.init.normal_(mod.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_uniform_(mod.weight)
            if mod.bias is not None:
                nn.init.uniform_(mod.bias, -0.05, 0.05)
    return m


def unit_scale_linears(model: nn.Module) -> nn.Module:
    """Re-draws nn.Linear weights with std 1/sqrt(fan_in). torchvision's MobileNet heads start at
    std 0.01, which leaves logits around 1e-3 -- too small for an atol of 1e-4 to mean much."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=m.in_features ** -0.5)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -0.1, 0.1)
    return model


def mobilenet_v2():
    import torchvision

    return unit_scale_linears(torchvision.models.MobileNetV2(num_classes=10, width_mult=0.25))


def mobilenet_v3_small():
    import torchvision

    return unit_scale_linears(torchvision.models.mobilenet_v3_small(weights=None, num_classes=10, width_mult=0.25))


def efficientnet_b0():
    from torchvision.models import efficientnet

    setting, last_channel = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25, depth_mult=0.25)
    return unit_scale_linears(efficientnet.EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=last_channel))


def densenet():
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=12, block_config=(3, 3, 3, 3), num_init_features=24, bn_size=4, num_classes=10)


def vision_family(name, build, dynamic_batch=False, description=""):
    dyn_in = {"input": {0: "batch"}} if dynamic_batch else {}
    dyn_out = {"logits": {0: "batch"}} if dynamic_batch else {}
    sets = [image_batch(1, IMG), image_batch(3, IMG)] if dynamic_batch else [image_batch(1, IMG)]
    return Family(
        name=name,
        build=build,
        input_names=["input"],
        output_names=["logits"],
        dynamic_inputs=dyn_in,
        dynamic_outputs=dyn_out,
        example=image_batch(2 if dynamic_batch else 1, IMG),
        datasets=sets,
        description=description,
    )


# ---------------------------------------------------------------------------------------------
# transformers


class BertEncoder(nn.Module):
    """BertModel returning (last_hidden_state, pooler_output)."""

    def __init__(self, config):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config)

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output


class SentenceEmbedding(nn.Module):
    """BertModel + attention-masked mean pooling + L2 normalisation (sentence-transformers style)."""

    def __init__(self, config):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config, add_pooling_layer=False)

    def forward(self, input_ids, attention_mask):
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        summed = (tokens * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(summed / counts, p=2, dim=1)


class GPT2Logits(nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers import GPT2LMHeadModel

        self.lm = GPT2LMHeadModel(config)

    def forward(self, input_ids, attention_mask):
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class ViTLogits(nn.Module):
    def __init__(self, config):
        super().__init__()
        from transformers import ViTForImageClassification

        self.vit = ViTForImageClassification(config)

    def forward(self, pixel_values):
        return self.vit(pixel_values=pixel_values).logits


def bert_config(**kw):
    from transformers import BertConfig

    base = dict(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        type_vocab_size=2,
        initializer_range=0.2,
    )
    base.update(kw)
    return BertConfig(**base)


def gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=2, n_head=4, use_cache=False,
        bos_token_id=0, eos_token_id=0, initializer_range=0.2,
    )


def vit_config():
    from transformers import ViTConfig

    return ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=10,
        initializer_range=0.2,
    )


BS = {0: "batch", 1: "seq"}


# ---------------------------------------------------------------------------------------------
# recurrent taggers


class RNNTagger(nn.Module):
    """Embedding -> 2-layer bidirectional LSTM/GRU (batch_first) -> Linear over tags."""

    def __init__(self, cell: str, vocab=50, emb=16, hidden=16, tags=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(emb, hidden, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        y, _ = self.rnn(x)
        return self.head(y)


# ---------------------------------------------------------------------------------------------


def families() -> list[Family]:
    text = ("input_ids", "attention_mask", "token_type_ids")
    return [
        vision_family(
            "resnet",
            NarrowResNet.build,
            dynamic_batch=True,
            description="torchvision ResNet, BasicBlock [2,2,2,2] (resnet18 layout) at width 8, 10 classes, 64x64",
        ),
        vision_family("mobilenet_v2", mobilenet_v2, description="torchvision MobileNetV2 width_mult=0.25, 10 classes"),
        vision_family(
            "mobilenet_v3_small",
            mobilenet_v3_small,
            description="torchvision mobilenet_v3_small width_mult=0.25, 10 classes",
        ),
        vision_family(
            "squeezenet1_1",
            narrow_squeezenet,
            description="torchvision SqueezeNet 1_1 layout with half-width Fire modules, 10 classes",
        ),
        vision_family(
            "efficientnet_b0",
            efficientnet_b0,
            description="torchvision EfficientNet B0 config, width_mult=0.25 depth_mult=0.25, 10 classes",
        ),
        vision_family(
            "densenet",
            densenet,
            description="torchvision DenseNet growth 12, blocks (3,3,3,3), 24 init features, 10 classes",
        ),
        Family(
            name="bert",
            build=lambda: BertEncoder(bert_config()),
            input_names=list(text),
            output_names=["last_hidden_state", "pooler_output"],
            dynamic_inputs={n: BS for n in text},
            dynamic_outputs={"last_hidden_state": BS, "pooler_output": {0: "batch"}},
            example=token_batch(2, 8, 100, text),
            datasets=[token_batch(2, 8, 100, text), token_batch(3, 13, 100, text)],
            description="transformers BertModel hidden 32, 2 layers, 4 heads, vocab 100 (default attention)",
        ),
        Family(
            name="sentence_embedding",
            build=lambda: SentenceEmbedding(bert_config(hidden_size=48, num_attention_heads=3, intermediate_size=96)),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_inputs={n: BS for n in ("input_ids", "attention_mask")},
            dynamic_outputs={"sentence_embedding": {0: "batch"}},
            example=token_batch(2, 8, 100, ("input_ids", "attention_mask")),
            datasets=[
                token_batch(2, 9, 100, ("input_ids", "attention_mask")),
                token_batch(4, 16, 100, ("input_ids", "attention_mask")),
            ],
            description="BertModel (hidden 48, 2 layers, 3 heads) + masked mean pooling + L2 normalize",
        ),
        Family(
            name="gpt2",
            build=lambda: GPT2Logits(gpt2_config()),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_inputs={n: BS for n in ("input_ids", "attention_mask")},
            dynamic_outputs={"logits": BS},
            example=token_batch(2, 8, 100, ("input_ids", "attention_mask")),
            datasets=[
                token_batch(2, 8, 100, ("input_ids", "attention_mask"), pad_rows=False),
                token_batch(3, 13, 100, ("input_ids", "attention_mask")),
            ],
            description="transformers GPT2LMHeadModel n_embd 32, 2 layers, 4 heads, vocab 100, use_cache=False",
        ),
        Family(
            name="vit",
            build=lambda: ViTLogits(vit_config()),
            input_names=["pixel_values"],
            output_names=["logits"],
            dynamic_inputs={"pixel_values": {0: "batch"}},
            dynamic_outputs={"logits": {0: "batch"}},
            example=image_batch(2, 32, name="pixel_values"),
            datasets=[image_batch(1, 32, name="pixel_values"), image_batch(3, 32, name="pixel_values")],
            description="transformers ViTForImageClassification 32x32, patch 8, hidden 32, 2 layers, 10 labels",
        ),
        Family(
            name="lstm_tagger",
            build=lambda: RNNTagger("lstm"),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_inputs={"input_ids": BS},
            dynamic_outputs={"logits": BS},
            example=token_batch(2, 8, 50, ("input_ids",), first_id=0),
            datasets=[token_batch(2, 7, 50, ("input_ids",), first_id=0), token_batch(3, 12, 50, ("input_ids",), first_id=0)],
            description="Embedding(50,16) + 2-layer bidirectional LSTM(16) + Linear(32,5)",
        ),
        Family(
            name="gru_tagger",
            build=lambda: RNNTagger("gru"),
            input_names=["input_ids"],
            output_names=["logits"],
            dynamic_inputs={"input_ids": BS},
            dynamic_outputs={"logits": BS},
            example=token_batch(2, 8, 50, ("input_ids",), first_id=0),
            datasets=[token_batch(2, 7, 50, ("input_ids",), first_id=0), token_batch(3, 12, 50, ("input_ids",), first_id=0)],
            description="Embedding(50,16) + 2-layer bidirectional GRU(16) + Linear(32,5)",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="families to redo (others stay as they are)")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo", "both"], default="both")
    ap.add_argument("--out", default=ROOT)
    args = ap.parse_args()
    exporters = ["torchscript", "dynamo"] if args.exporter == "both" else [args.exporter]
    torch.set_num_threads(1)
    run_all(families(), exporters, args.out, set(args.only) if args.only else None, merge=args.exporter != "both")


if __name__ == "__main__":
    main()
